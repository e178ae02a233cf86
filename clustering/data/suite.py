"""The development suite: data sets of varied shape built from what is at hand.

The defaults must hold on data nobody tuned them for, so they are measured on a suite that varies
what the defaults depend on: channels (grayscale, colour), native size (8 to 64 px), N (400 to
4,000) and C (10, 20, 40, 200). Every set is deterministic (fixed selection seed).

- Embedded (scikit-learn's digits, offline): ``digits-64`` (upsampled to 64 px), ``digits-rot20``
  (each digit upright and turned 90 degrees: 20 classes), ``digits-pairs40`` (two-digit numbers,
  400 images of 40 classes: the "few images per class" regime), ``digits-pairs200`` (all 100
  two-digit numbers, upright and turned: 200 classes of 20 images).
- From ``../shared/data`` (``--root`` may name the set's own folder or the folder holding it):
  ``mnist-1k`` (1,000 MNIST test images, 100 per class), ``cifar10-2k`` (2,000 CIFAR-10 test
  images, colour), ``cifar10-flip20`` (2,000 CIFAR-10 test images, half of them upside down:
  20 classes, colour).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clustering.data.base import DataError, DataSet, DataSourceSpec, register_source, require_root, resize_uint8
from clustering.data.sources import load_digits, load_imagefolder, load_mnist_test

SUITE_SEED = 20261201
SUITE = ("digits-64", "digits-rot20", "digits-pairs40", "digits-pairs200", "mnist-1k", "cifar10-2k",
         "cifar10-flip20")


def _subfolder(root: str | Path | None, dataset: str, name: str) -> Path:
    """``root`` itself, or ``root/name`` when that exists (so ``--root ../shared/data`` serves every set)."""
    folder = require_root(root, dataset)
    return folder / name if (folder / name).is_dir() else folder


def _per_class(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``count`` samples of every class, drawn without replacement, in class order."""
    picked = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < count:
            raise DataError(f"class {label} has {len(members)} samples; {count} are needed")
        picked.append(np.sort(rng.choice(members, count, replace=False)))
    return np.concatenate(picked)


def _dataset(images: torch.Tensor, labels: np.ndarray, names: list[str], name: str) -> DataSet:
    return DataSet(inputs=images.contiguous(), labels=labels.astype(np.int64), class_names=names, name=name,
                   num_classes=len(names))  # fmt: skip


def load_digits_64(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """Digits at 64 px: large native images of simple content (the size chooser must scale down)."""
    digits = load_digits(split=split)
    return _dataset(resize_uint8(digits.inputs, 64), digits.labels, digits.class_names, "digits-64")


def load_digits_rot20(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """Every digit upright (classes 0-9) and turned 90 degrees (classes 10-19): 3,594 images."""
    digits = load_digits(split=split)
    turned = torch.rot90(digits.inputs, 1, dims=(2, 3))
    names = digits.class_names + [f"{c} turned" for c in digits.class_names]
    labels = np.concatenate([digits.labels, digits.labels + 10])
    return _dataset(torch.cat([digits.inputs, turned]), labels, names, "digits-rot20")


def load_digits_pairs40(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """Two-digit numbers: 40 ordered pairs (a, b) of distinct digits, 10 images each (400 images,
    16 px): the many-clusters, few-images regime of small face or object collections."""
    digits = load_digits(split=split)
    rng = np.random.default_rng(SUITE_SEED)
    all_pairs = [(a, b) for a in range(10) for b in range(10) if a != b]
    pairs = [all_pairs[i] for i in np.sort(rng.choice(len(all_pairs), 40, replace=False))]
    images = torch.zeros(400, 1, 16, 16, dtype=torch.uint8)
    labels = np.repeat(np.arange(40), 10)
    by_class = {c: np.flatnonzero(digits.labels == c) for c in range(10)}
    raw = digits.inputs[:, :, ::2, ::2] if digits.inputs.shape[-1] == 16 else digits.inputs  # back to 8 px
    for i, label in enumerate(labels):
        a, b = pairs[label]
        images[i, :, 4:12, 0:8] = raw[rng.choice(by_class[a])]
        images[i, :, 4:12, 8:16] = raw[rng.choice(by_class[b])]
    return _dataset(images, labels, [f"{a}{b}" for a, b in pairs], "digits-pairs40")


def load_digits_pairs200(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """Every two-digit number 00-99, upright (classes 0-99) and turned 90 degrees (100-199), 20
    images each (4,000 images, 16 px): 200 clusters, the scale of the UCCC paper's Tiny-ImageNet."""
    digits = load_digits(split=split)
    rng = np.random.default_rng(SUITE_SEED)
    labels = np.repeat(np.arange(200), 20)
    images = torch.zeros(len(labels), 1, 16, 16, dtype=torch.uint8)
    by_class = {c: np.flatnonzero(digits.labels == c) for c in range(10)}
    raw = digits.inputs[:, :, ::2, ::2] if digits.inputs.shape[-1] == 16 else digits.inputs  # back to 8 px
    for i, label in enumerate(labels):
        a, b = divmod(int(label) % 100, 10)
        images[i, :, 4:12, 0:8] = raw[rng.choice(by_class[a])]
        images[i, :, 4:12, 8:16] = raw[rng.choice(by_class[b])]
    turned = torch.from_numpy(labels >= 100)
    images[turned] = torch.rot90(images[turned], 1, dims=(2, 3))
    names = [f"{n:02d}" for n in range(100)] + [f"{n:02d} turned" for n in range(100)]
    return _dataset(images, labels, names, "digits-pairs200")


def load_mnist_1k(root: str | Path | None = None, split: str = "test", **_: object) -> DataSet:
    """1,000 MNIST test images, 100 per class."""
    mnist = load_mnist_test(require_root(root, "mnist-1k"), split="test")
    keep = _per_class(mnist.labels, 100, np.random.default_rng(SUITE_SEED))
    return _dataset(mnist.inputs[torch.from_numpy(keep)], mnist.labels[keep], mnist.class_names, "mnist-1k")


def _cifar_subset(root: str | Path | None, dataset: str) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    cifar = load_imagefolder(_subfolder(root, dataset, "cifar10-test"), image_size=32)
    if cifar.num_classes != 10:
        raise DataError(f"{dataset} expects the CIFAR-10 test ImageFolder (10 classes), found {cifar.num_classes}")
    keep = _per_class(cifar.labels, 200, np.random.default_rng(SUITE_SEED))
    return cifar.inputs[torch.from_numpy(keep)], cifar.labels[keep], cifar.class_names


def load_cifar10_2k(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """2,000 CIFAR-10 test images (200 per class), 32 px colour."""
    images, labels, names = _cifar_subset(root, "cifar10-2k")
    return _dataset(images, labels, names, "cifar10-2k")


def load_cifar10_flip20(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """2,000 CIFAR-10 test images; every other image of a class is upside down (its own class)."""
    images, labels, names = _cifar_subset(root, "cifar10-flip20")
    flipped = np.arange(len(labels)) % 2 == 1
    images = images.clone()
    images[torch.from_numpy(flipped)] = torch.flip(images[torch.from_numpy(flipped)], dims=(2,))
    labels = np.where(flipped, labels + 10, labels)
    return _dataset(images, labels, names + [f"{n} upside down" for n in names], "cifar10-flip20")


for _spec in (
    DataSourceSpec("digits-64", load_digits_64, "suite: digits upsampled to 64 px (embedded)", False, 10),
    DataSourceSpec("digits-rot20", load_digits_rot20, "suite: digits upright and turned 90 degrees, 20 classes "
                   "(embedded)", False, 20),
    DataSourceSpec("digits-pairs40", load_digits_pairs40, "suite: 400 two-digit numbers, 40 classes (embedded)",
                   False, 40),
    DataSourceSpec("digits-pairs200", load_digits_pairs200, "suite: 4,000 two-digit numbers upright and turned, "
                   "200 classes (embedded)", False, 200),
    DataSourceSpec("mnist-1k", load_mnist_1k, "suite: 1,000 MNIST test images (--root: mnist-test or its parent)",
                   True, 10),
    DataSourceSpec("cifar10-2k", load_cifar10_2k, "suite: 2,000 CIFAR-10 test images (--root: cifar10-test or its "
                   "parent)", True, 10),
    DataSourceSpec("cifar10-flip20", load_cifar10_flip20, "suite: 2,000 CIFAR-10 test images, half upside down, "
                   "20 classes", True, 20),
):  # fmt: skip
    register_source(_spec)
