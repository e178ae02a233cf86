"""ACC (Hungarian), NMI, ARI, JSD and the evaluate() dict."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from clustering.metrics import accuracy, evaluate, hungarian_mapping, js_divergence


def test_permuted_labels_give_acc_one() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    perm = np.array([3, 0, 4, 1, 2])
    m = evaluate(labels, perm[labels])
    assert m["acc"] == 1.0 and m["nmi"] == pytest.approx(1.0) and m["ari"] == pytest.approx(1.0)
    assert m["jsd"] == pytest.approx(0.0, abs=1e-12)
    assert {int(k): v for k, v in m["mapping"].items()} == {int(perm[c]): c for c in range(5)}


def test_acc_hand_computed() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    preds = np.array([1, 1, 0, 0, 0, 0])  # best map: 1->0 (2 right), 0->1 (3 right)
    assert accuracy(labels, preds) == pytest.approx(5 / 6)


def test_more_clusters_than_classes() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    preds = np.array([0, 0, 2, 2, 1, 1, 1, 1])  # cluster 2 stays unmapped: 2 errors
    mapping = hungarian_mapping(labels, preds)
    assert len(mapping) == 2 and mapping[1] == 1
    assert accuracy(labels, preds) == pytest.approx(6 / 8)


def test_fewer_clusters_than_classes() -> None:
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 1, 1, 1, 1])
    assert accuracy(labels, preds) == pytest.approx(4 / 6)


def test_nmi_ari_match_sklearn() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 300)
    preds = rng.integers(0, 6, 300)
    m = evaluate(labels, preds)
    assert m["nmi"] == pytest.approx(normalized_mutual_info_score(labels, preds))
    assert m["ari"] == pytest.approx(adjusted_rand_score(labels, preds))


def test_jsd_base2_bounds_and_scipy() -> None:
    assert js_divergence([0.2, 0.8], [0.2, 0.8]) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    rng = np.random.default_rng(2)
    for _ in range(5):
        p, q = rng.random(7), rng.random(7)
        ours = js_divergence(p, q)
        assert 0.0 <= ours <= 1.0
        assert ours == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-9)


def test_collapse_jsd_on_balanced_ten_classes() -> None:
    # Everything in one cluster with 10 equal classes: JSD = the value the issue quotes (~0.76).
    labels = np.repeat(np.arange(10), 50)
    preds = np.zeros(500, dtype=int)
    m = evaluate(labels, preds, np.eye(10)[preds])
    p = np.zeros(10)
    p[0] = 1.0
    assert m["jsd"] == pytest.approx(jensenshannon(p, np.full(10, 0.1), base=2) ** 2)
    assert m["n_nonempty"] == 1 and m["confidence"] == 1.0
    assert m["cluster_sizes"] == [500] + [0] * 9


def test_evaluate_without_labels() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = evaluate(None, probs.argmax(1), probs)
    assert m["acc"] is None and m["nmi"] is None and m["jsd"] is None
    assert m["confidence"] == pytest.approx((0.9 + 0.8 + 0.6) / 3)
    assert m["n_nonempty"] == 2 and m["cluster_sizes"] == [2, 1]


def test_evaluate_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        evaluate(np.zeros(3), np.zeros(4))
