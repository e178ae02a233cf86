"""The end-of-run UMAP + GMM partition (``clustering.umap_gmm``) and its writing into the head."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
import torch
from test_split_merge import head_writing, same_partition

from clustering.head_refit import refit_head
from clustering.kmeans import spherical_kmeans
from clustering.kmeans_restarts import best_of_restarts, match_ids
from clustering.umap_gmm import MIN_IMAGES, too_small, umap_gmm_partition


def wide_and_two_tight(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-negative features of three classes: 400 rows spread wide over 8 coordinates, and two
    tight groups of 40 close to each other (their centres at cosine 0.94), apart from the first."""
    g = torch.Generator().manual_seed(seed)
    e = torch.eye(16)
    wide = e[0] + e[1] + 0.35 * torch.randn(400, 16, generator=g) * (torch.arange(16) < 8)
    tight = [2 * e[9] + 0.5 * e[k] + 0.05 * torch.randn(40, 16, generator=g) for k in (10, 11)]
    return torch.cat([wide, *tight]).abs(), torch.repeat_interleave(torch.arange(3), torch.tensor([400, 40, 40]))


def evened(truth: torch.Tensor) -> torch.Tensor:
    """What a uniform prior makes of them: the wide class in two clusters (267 and 133 rows), the
    tight two in one."""
    labels = truth.clone()
    labels[truth == 2] = 1
    labels[torch.nonzero(truth == 0).flatten()[1::3]] = 2
    return labels


def test_umap_gmm_finds_the_classes_where_the_kmeans_objective_keeps_them_evened() -> None:
    h, truth = wide_and_two_tight()
    _, own, _ = spherical_kmeans(h, evened(truth), 3)  # the refit: Lloyd from the head's partition
    won, notes = best_of_restarts(h, own, 3, 10, torch.Generator().manual_seed(0))
    kept = won if won is not None else own
    assert (kept == truth).float().mean() < 0.6 and not same_partition(kept, truth)  # k-means stays evened
    assert same_partition(umap_gmm_partition(h, 3, seed=0), truth)


def test_the_partition_is_reproducible_from_its_seed() -> None:
    h, _ = wide_and_two_tight(seed=1)
    first = umap_gmm_partition(h, 3, seed=5)
    assert first.dtype == torch.long and first.shape == (480,) and set(first.tolist()) == {0, 1, 2}
    assert torch.equal(first, umap_gmm_partition(h, 3, seed=5))


def test_too_small_a_set_is_refused_with_the_reason() -> None:
    assert too_small(400, 40) is None and too_small(MIN_IMAGES, 2) is None
    assert "19 images for 2 clusters" in str(too_small(MIN_IMAGES - 1, 2))
    assert "two per cluster" in str(too_small(30, 20))
    with pytest.raises(ValueError, match="30 images for 20 clusters: UMAP \\+ GMM needs"):
        umap_gmm_partition(torch.rand(30, 8), 20)


def test_refit_head_writes_the_umap_gmm_partition_into_the_head_with_its_ids_matched() -> None:
    h, truth = wide_and_two_tight()
    head = head_writing(evened(truth), h, 3)
    before = head(h).argmax(dim=1)
    notes = refit_head(head, h, lloyd=False, umap_gmm=True, seed=0)
    after = head(h).argmax(dim=1)
    assert same_partition(after, truth)
    assert "refit_iterations" not in notes  # in place of the Lloyd refit
    assert notes["umap_gmm_kept"] == pytest.approx(float((after == before).float().mean()))
    assert notes["refit_moved"] == pytest.approx(1 - notes["umap_gmm_kept"])
    # the ids overlap the head's most (of the six namings), so the wide class keeps 0, its larger part's
    namings = [torch.tensor(p)[after] for p in itertools.permutations(range(3))]
    assert int((after == before).sum()) == max(int((n == before).sum()) for n in namings)
    assert int(after[0]) == 0 and sorted({int(after[400]), int(after[440])}) == [1, 2]


def test_match_ids_copes_with_a_reference_that_leaves_clusters_empty() -> None:
    reference = torch.tensor([0, 0, 0, 0, 2, 2])  # a head that left cluster 1 empty
    labels = torch.tensor([1, 1, 2, 2, 0, 0])
    matched = match_ids(labels, reference, 3)
    assert same_partition(matched, labels) and sorted(set(matched.tolist())) == [0, 1, 2]
    assert int((matched == reference).sum()) == 4  # 2 of the first class, both of the last


def test_a_cc_run_ends_with_umap_gmm_by_default_and_eval_applies_it_to_a_checkpoint(tmp_path) -> None:  # noqa: ANN001
    """A CC run with no end-of-run flags against the same training with ``--no-umap-gmm`` and the
    moves off, and ``eval --umap-gmm`` of that one. Eval embeds without the trainer's channels-last
    layout, so its features differ in the fifth decimal, and UMAP's graph can then differ: the same
    step, not necessarily the same clusters as the run's end; on the same features, the same."""
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.evaluation import evaluate_run
    from clustering.runs import read_metrics, read_predictions
    from clustering.train import train

    data = load_dataset("digits", image_size=12)

    def run(run_id: str, **ends: object) -> object:
        return train(TrainConfig(method="cc", dataset="digits", image_size=12, batch_size=256, out=str(tmp_path),
                                 seed=3, threads=2, projections="none", max_steps=3, amp="off", run_id=run_id,
                                 **ends),  # type: ignore[arg-type]
                     progress=False, data=data)  # fmt: skip

    plain = run("plain", umap_gmm=False, refit_head=False, split_merge=False, kmeans_restarts=0)
    mixed = run("mixed")
    config = json.loads((mixed.run_dir / "config.json").read_text())
    assert config["umap_gmm"] is True and config["data_defaults"]["umap_gmm"]["value"] is True
    assert config["kmeans_restarts"] == 0 and config["refit_head"] is False
    plain_row, row = read_metrics(plain.run_dir)[-1], read_metrics(mixed.run_dir)[-1]
    assert "umap_gmm_kept" not in plain_row and 0.0 <= row["umap_gmm_kept"] <= 1.0
    assert row["acc_as_trained"] == pytest.approx(plain_row["acc"]) and row["n_nonempty"] == 10
    assert row["acc"] > plain_row["acc"]  # three steps leave a head far from the features' clusters
    assert torch.equal(torch.from_numpy(read_predictions(plain.run_dir)["h"]),
                       torch.from_numpy(read_predictions(mixed.run_dir)["h"]))  # fmt: skip
    assert evaluate_run(mixed.run_dir, which="last")["acc"] == pytest.approx(row["acc"])  # the head keeps it
    late, again = (evaluate_run(plain.run_dir, which="last", umap_gmm=True) for _ in range(2))
    assert late["acc"] == again["acc"] and late["umap_gmm_kept"] == again["umap_gmm_kept"]
    assert late["as_trained"]["acc"] == pytest.approx(plain_row["acc"]) and late["n_nonempty"] == 10
    assert late["acc"] > plain_row["acc"]
    # eval --umap-gmm-if-uneven --refit-head: the decision on the checkpoint's own head
    sizes = evaluate_run(plain.run_dir, which="last")["cluster_sizes"]
    decided = evaluate_run(plain.run_dir, which="last", umap_gmm="if_uneven", refit_head=True)
    assert decided["largest_over_mean_at_end"] == pytest.approx(max(sizes) * len(sizes) / sum(sizes))
    if decided["largest_over_mean_at_end"] > 1.3:
        assert decided["acc"] == late["acc"] and "refit_iterations" not in decided
    else:
        assert "umap_gmm_kept" not in decided and "refit_iterations" in decided


@pytest.mark.parametrize("uneven_head", [True, False])
def test_if_uneven_replaces_only_an_uneven_heads_partition_at_the_end(tmp_path, uneven_head: bool) -> None:  # noqa: ANN001
    """UCCC's default end (``umap_gmm="if_uneven"``): a head whose largest cluster holds more than
    1.3 times the mean is replaced by UMAP + GMM, without the refit and moves; an even head gets its
    own end (here the refit's Lloyd iterations). The trainer's head and features are set by hand:
    the head's partition is the classes', 400 / 40 / 40 rows (2.5 times the mean) or 40 / 40 / 40."""
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.setup import prepare_data, resolve_config
    from clustering.trainer import Trainer

    h, truth = wide_and_two_tight()
    if not uneven_head:  # the wide class cut to 40 rows
        keep = torch.cat([torch.arange(40), torch.arange(400, 480)])
        h, truth = h[keep], truth[keep]
    digits = load_dataset("digits", image_size=12)  # images under the hand-set features, labelled as them
    data = dataclasses.replace(digits, inputs=digits.inputs[: len(truth)], labels=truth.numpy(), num_classes=3,
                               class_names=["wide", "tight", "tighter"])  # fmt: skip
    cfg = resolve_config(TrainConfig(method="uccc", dataset="digits", image_size=12, out=str(tmp_path), seed=0,
                                     threads=2, projections="none", max_steps=1, amp="off", refit_head=True),
                         data, "cpu")  # fmt: skip
    assert cfg.umap_gmm == "if_uneven" and cfg.data_defaults["umap_gmm"]["value"] == "if_uneven"
    trainer = Trainer(cfg, prepare_data(cfg, data), torch.device("cpu"))
    head = head_writing(truth, h, 3)
    assert same_partition(head(h).argmax(dim=1), truth)
    trainer.model.cluster_head = head
    trainer.embed = lambda: {"h": h.numpy(), "probs": head(h).softmax(dim=1).detach().numpy()}  # type: ignore[method-assign]
    notes = trainer.finish(epoch=1)
    assert notes["largest_over_mean_at_end"] == pytest.approx(2.5 if uneven_head else 1.0)
    if uneven_head:  # replaced: the mixture finds the same three classes
        assert notes["umap_gmm_kept"] == 1.0 and notes["acc_as_trained"] == 1.0
        assert "refit_iterations" not in notes and "split_merge_moves" not in notes
    else:
        assert "umap_gmm_kept" not in notes and "refit_iterations" in notes
    assert same_partition(head(h).argmax(dim=1), truth)


def test_uneven_is_the_largest_cluster_over_the_mean() -> None:
    from clustering.methods.balance_switch import uneven

    def probs(sizes: list[int]) -> torch.Tensor:
        return torch.eye(len(sizes))[torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))]

    assert uneven(probs([5, 3, 2]).numpy()) == (True, pytest.approx(1.5))  # 5 of 10 against 10 / 3
    assert uneven(probs([4, 3, 3]).numpy()) == (False, pytest.approx(1.2))
    assert uneven(probs([13, 10, 10, 7]).numpy()) == (False, pytest.approx(1.3))  # the bar itself is even


def test_the_cli_flag_asks_for_if_uneven() -> None:
    from clustering.cli import build_parser
    from clustering.umap_gmm import IF_UNEVEN

    assert build_parser().parse_args(["train", "--umap-gmm-if-uneven"]).umap_gmm == IF_UNEVEN
    assert build_parser().parse_args(["train", "--umap-gmm"]).umap_gmm is True


def test_end_steps_replace_every_step_by_umap_gmm_only_where_the_head_is_uneven() -> None:
    from clustering.head_refit import end_steps

    uneven_probs = torch.eye(3)[torch.tensor([0] * 8 + [1, 2])].numpy()  # 8 of 10: 2.4 times the mean
    even_probs = torch.eye(3)[torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])].numpy()  # 1.2
    asked = {"lloyd": True, "split_merge": True, "restarts": 4}
    steps, notes = end_steps(uneven_probs, **asked, umap_gmm="if_uneven")
    assert steps == {"lloyd": False, "split_merge": False, "restarts": 0, "umap_gmm": True}
    assert notes == {"largest_over_mean_at_end": pytest.approx(2.4)}
    steps, notes = end_steps(even_probs, **asked, umap_gmm="if_uneven")
    assert steps == asked | {"umap_gmm": False} and notes == {"largest_over_mean_at_end": pytest.approx(1.2)}
    for setting in (True, False):  # no decision, no note
        assert end_steps(uneven_probs, **asked, umap_gmm=setting) == (asked | {"umap_gmm": setting}, {})


def test_eval_takes_if_uneven_as_train_does_and_not_beside_umap_gmm(capsys) -> None:  # noqa: ANN001
    from clustering.cli import build_parser, main
    from clustering.umap_gmm import IF_UNEVEN

    assert build_parser().parse_args(["eval", "run", "--umap-gmm-if-uneven"]).umap_gmm == IF_UNEVEN
    assert build_parser().parse_args(["eval", "run", "--umap-gmm"]).umap_gmm is True
    assert build_parser().parse_args(["eval", "run"]).umap_gmm is False
    assert main(["eval", "run", "--umap-gmm", "--umap-gmm-if-uneven"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
