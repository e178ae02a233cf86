"""The development suite's sets: the shapes and class counts the README's tables claim, balanced
classes (or the documented sizes, for the class-size sets), and the same images on every load (the
benchmarks compare runs across days)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clustering.data import DataSet, load_dataset
from clustering.data.suite import SUITE

EMBEDDED = {  # name: (N, C, native px)
    "digits-64": (1797, 10, 64),
    "digits-rot20": (3594, 20, 8),
    "digits-pairs40": (400, 40, 16),
    "digits-pairs100": (2000, 100, 16),
    "digits-pairs200": (4000, 200, 16),
    "digits-longtail": (710, 10, 8),
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


@pytest.mark.parametrize("name,per_class", [("digits-pairs40", 10), ("digits-pairs100", 20),
                                                    ("digits-pairs200", 20)])
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


def test_pairs100_is_the_upright_half_of_pairs200() -> None:
    upright, both = load_dataset("digits-pairs100"), load_dataset("digits-pairs200")
    assert torch.equal(upright.inputs, both.inputs[:2000]) and np.array_equal(upright.labels, both.labels[:2000])
    assert upright.class_names == both.class_names[:100]


def test_longtail_digits_fall_tenfold_from_the_first_class_to_the_last() -> None:
    data, digits = load_dataset("digits-longtail"), load_dataset("digits")
    assert np.bincount(data.labels).tolist() == [174, 135, 104, 81, 63, 48, 37, 29, 22, 17]
    # every image is one of digits', under its own label, and none is drawn twice
    flat = digits.inputs.numpy().reshape(len(digits), -1)
    rows = {bytes(x): int(y) for x, y in zip(flat, digits.labels, strict=True)}
    picked = [bytes(x) for x in data.inputs.numpy().reshape(len(data), -1)]
    assert all(rows[x] == y for x, y in zip(picked, data.labels, strict=True)) and len(set(picked)) == len(picked)


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_mnist = pytest.mark.skipif(not (SHARED / "mnist-test").is_dir(), reason="../shared/data/mnist-test is absent")


@needs_mnist
@pytest.mark.parametrize("name,sizes", [("mnist-usps-sizes", [978, 799, 585, 519, 536, 451, 525, 498, 446, 517]),
                                        ("mnist-longtail", [980, 759, 587, 455, 352, 273, 211, 163, 127, 98])])
def test_mnist_class_size_sets_have_their_documented_sizes(name: str, sizes: list[int]) -> None:
    data = load_dataset(name, root=SHARED)
    assert name in SUITE and data.inputs.shape == (sum(sizes), 1, 28, 28)
    assert np.bincount(data.labels).tolist() == sizes
    again = load_dataset(name, root=SHARED / "mnist-test")  # the set's own folder serves too
    assert torch.equal(data.inputs, again.inputs) and np.array_equal(data.labels, again.labels)
needs_cifar = pytest.mark.skipif(not (SHARED / "cifar10-test").is_dir(), reason="../shared/data/cifar10-test is absent")


@pytest.fixture(scope="module")
def proxies() -> dict[str, DataSet]:
    return {name: load_dataset(name, root=SHARED) for name in ("objects-poses20", "objects-ids40", "objects-ids100")}


@needs_cifar
@pytest.mark.parametrize("name,shape,classes,per_class", [("objects-poses20", (1440, 1, 128, 128), 20, 72),
                                                          ("objects-ids40", (400, 1, 32, 32), 40, 10),
                                                          ("objects-ids100", (2000, 1, 32, 32), 100, 20)])  # fmt: skip
def test_gray_proxies_have_their_documented_shape(proxies: dict[str, DataSet], name: str, shape: tuple,
                                                  classes: int, per_class: int) -> None:  # fmt: skip
    data = proxies[name]
    assert name in SUITE and data.inputs.shape == shape and data.inputs.dtype == torch.uint8
    assert data.num_classes == classes == len(set(data.class_names))
    assert set(np.bincount(data.labels).tolist()) == {per_class}
    again = load_dataset(name, root=SHARED / "cifar10-test")  # the set's own folder serves too
    assert torch.equal(data.inputs, again.inputs) and np.array_equal(data.labels, again.labels)


@needs_cifar
def test_poses20_objects_sit_on_black_and_turn_into_their_mirror_image(proxies: dict[str, DataSet]) -> None:
    images = proxies["objects-poses20"].inputs.float()
    assert images[:, :, :, :8].max() == 0 and images[:, :, :8, :].max() == 0  # black margin
    front, back, side = images[0, 0], images[36, 0], images[18, 0]  # 0, 180 and 90 degrees
    assert (side.sum(0) > 0).sum() < 0.6 * (front.sum(0) > 0).sum()  # side-on: fewer lit columns
    # The far side is the front mirrored (up to the per-pose tilt and exposure), not the front itself.
    front, back = front / front.mean(), back / back.mean()
    assert (back - torch.flip(front, dims=(1,))).abs().mean() < 0.5 * (back - front).abs().mean()


@needs_cifar
@pytest.mark.parametrize("name", ["objects-ids40", "objects-ids100"])
def test_shots_of_a_subject_are_closer_to_each_other_than_to_other_subjects(proxies: dict[str, DataSet],
                                                                            name: str) -> None:  # fmt: skip
    data = proxies[name]
    flat = data.inputs.float().flatten(1)
    flat = (flat - flat.mean(1, keepdim=True)) / flat.std(1, keepdim=True)
    distances = torch.cdist(flat, flat)
    same = torch.from_numpy(data.labels[:, None] == data.labels[None, :])
    off_diagonal = ~torch.eye(len(flat), dtype=torch.bool)
    assert distances[same & off_diagonal].mean() < 0.8 * distances[~same].mean()
    # ...but not copies: the shots of a subject differ (pose and lighting change every one).
    assert distances[same & off_diagonal].min() > 1.0
