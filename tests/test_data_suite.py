"""The development suite's embedded sets: the shapes and class counts the README's tables claim,
balanced classes, and the same images on every load (the benchmarks compare runs across days)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clustering.data import load_dataset
from clustering.data.suite import SUITE

EMBEDDED = {  # name: (N, C, native px)
    "digits-64": (1797, 10, 64),
    "digits-rot20": (3594, 20, 8),
    "digits-pairs40": (400, 40, 16),
    "digits-pairs200": (4000, 200, 16),
}


@pytest.mark.parametrize("name", list(EMBEDDED))
def test_embedded_suite_sets_have_their_documented_shape(name: str) -> None:
    n, classes, size = EMBEDDED[name]
    data = load_dataset(name)
    assert name in SUITE
    assert data.inputs.shape == (n, 1, size, size) and data.inputs.dtype == torch.uint8
    assert data.num_classes == classes == len(data.class_names) == len(np.unique(data.labels))
    again = load_dataset(name)
    assert torch.equal(data.inputs, again.inputs) and np.array_equal(data.labels, again.labels)


@pytest.mark.parametrize("name,per_class", [("digits-pairs40", 10), ("digits-pairs200", 20)])
def test_pair_sets_are_balanced_and_their_classes_differ(name: str, per_class: int) -> None:
    data = load_dataset(name)
    assert set(np.bincount(data.labels).tolist()) == {per_class}
    means = torch.stack([data.inputs[torch.from_numpy(data.labels == c)].float().mean(0)
                         for c in range(data.num_classes)])  # fmt: skip
    distances = torch.cdist(means.flatten(1), means.flatten(1))
    assert (distances + torch.eye(len(means)) * 1e9).min() > 0  # no two classes share their mean image


def test_pairs200_turned_classes_are_the_upright_numbers_turned() -> None:
    data = load_dataset("digits-pairs200")
    upright = data.inputs[torch.from_numpy(data.labels == 12)].float().mean(0)
    turned = data.inputs[torch.from_numpy(data.labels == 112)].float().mean(0)
    # The class means of "12" and "12 turned" are close to rotations of each other (different
    # draws of the digits, so not equal), and far from unrotated.
    assert (torch.rot90(upright, 1, dims=(1, 2)) - turned).abs().mean() < 0.5 * (upright - turned).abs().mean()
    assert data.class_names[12] == "12" and data.class_names[112] == "12 turned"
