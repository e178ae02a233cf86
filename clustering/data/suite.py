"""The development suite: data sets of varied shape built from what is at hand.

The defaults must hold on data nobody tuned them for, so they are measured on a suite that varies
what the defaults depend on: channels (grayscale, colour), native size (8 to 128 px), N (400 to
4,000) and C (10, 20, 40, 100, 200). Every set is deterministic (fixed selection seed).

- Embedded (scikit-learn's digits, offline): ``digits-64`` (upsampled to 64 px), ``digits-rot20``
  (each digit upright and turned 90 degrees: 20 classes), ``digits-pairs40`` (two-digit numbers,
  400 images of 40 classes: the "few images per class" regime), ``digits-pairs200`` (all 100
  two-digit numbers, upright and turned: 200 classes of 20 images).
- From ``../shared/data`` (``--root`` may name the set's own folder or the folder holding it):
  ``mnist-1k`` (1,000 MNIST test images, 100 per class), ``cifar10-2k`` (2,000 CIFAR-10 test
  images, colour), ``cifar10-flip20`` (2,000 CIFAR-10 test images, half of them upside down:
  20 classes, colour), and two grayscale proxies of the kinds of collection the suite lacked, built
  from CIFAR-10 test images turned to gray: ``objects-poses20`` (20 objects on black, 72 poses
  each, 128 px: a COIL-like turntable) and ``objects-ids40`` (40 subjects, 10 shots each under
  changed pose, scale and lighting, 32 px: the regime of a small face collection). Their classes
  live in natural-image detail, not in strokes, so they test the 16 px grayscale rule where the
  handwriting sets cannot; ``objects-ids100`` (100 such subjects, 20 shots each) tests the
  many-cluster rules away from digits.
- Classes of different sizes (every other set is balanced): ``mnist-usps-sizes`` (MNIST test images
  in the class proportions of USPS, 1,553 zeros to 708 eights scaled to 5,854 images: 978 to 446),
  ``mnist-longtail`` (a 10:1 geometric tail, 980 zeros to 98 nines, 4,005 images) and the embedded
  ``digits-longtail`` (the same tail on digits, 174 to 17, 710 images).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from clustering.data.base import DataError, DataSet, DataSourceSpec, register_source, require_root, resize_uint8
from clustering.data.sources import load_digits, load_imagefolder, load_mnist_test

SUITE_SEED = 20261201
SUITE = ("digits-64", "digits-rot20", "digits-pairs40", "digits-pairs100", "digits-pairs200", "mnist-1k", "cifar10-2k",
         "cifar10-flip20", "objects-poses20", "objects-ids40", "objects-ids100", "mnist-usps-sizes", "mnist-longtail",
         "digits-longtail")
#: USPS's class sizes (digits 0-9 of its 9,298 images): the handwriting set of another shape.
USPS_CLASS_SIZES = (1553, 1269, 929, 824, 852, 716, 834, 792, 708, 821)


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


def load_digits_pairs100(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """The upright half of ``digits-pairs200``: every two-digit number 00-99, 20 images each (2,000
    images, 16 px): 100 clusters, between the suite's 40 and 200."""
    full = load_digits_pairs200(root, split)
    upright = full.labels < 100
    return _dataset(full.inputs[torch.from_numpy(upright)], full.labels[upright], full.class_names[:100],
                    "digits-pairs100")  # fmt: skip


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


def _cifar_gray_subjects(root: str | Path | None, dataset: str, count: int) -> tuple[torch.Tensor, list[str]]:
    """``count`` CIFAR-10 test images as float gray (count, 1, 32, 32) in [0, 1], an equal number
    from each class, and their names."""
    cifar = load_imagefolder(_subfolder(root, dataset, "cifar10-test"), image_size=32)
    if cifar.num_classes != 10:
        raise DataError(f"{dataset} expects the CIFAR-10 test ImageFolder (10 classes), found {cifar.num_classes}")
    keep = _per_class(cifar.labels, count // 10, np.random.default_rng(SUITE_SEED))
    rgb = cifar.inputs[torch.from_numpy(keep)].float() / 255
    gray = (rgb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    names = [f"{cifar.class_names[cifar.labels[i]]} #{n}" for n, i in enumerate(keep)]
    return gray, names


def _warp(images: torch.Tensor, size: int, angle: torch.Tensor, scale_x: torch.Tensor, scale_y: torch.Tensor,
          shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Each image rotated by ``angle`` (radians), scaled by (scale_x, scale_y) (a negative scale_x
    mirrors) and shifted (in units of half the canvas), onto a black ``size`` x ``size`` canvas."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps output to input coordinates: the inverse of scale-then-rotate.
    theta = torch.stack([torch.stack([cos / scale_x, sin / scale_x, -shift_x], -1),
                         torch.stack([-sin / scale_y, cos / scale_y, -shift_y], -1)], 1)  # fmt: skip
    grid = F.affine_grid(theta, [len(images), 1, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images * 255).round().clamp(0, 255).to(torch.uint8)


def load_objects_poses20(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """20 objects on a black background, each seen in 72 poses 5 degrees apart on a turntable,
    128 px grayscale (1,440 images): the shape of COIL-20. An object is a CIFAR-10 image under a
    soft round mask; turning it narrows it horizontally by |cos| of the angle (its far side is its
    mirror image), with a small tilt and a change of exposure per pose."""
    gray, names = _cifar_gray_subjects(root, "objects-poses20", 20)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 32), indexing="ij")
    objects = gray * (1.15 - (xx**2 + yy**2).sqrt()).clamp(0, 0.15) / 0.15  # soft disc, black outside
    rng = np.random.default_rng(SUITE_SEED)
    labels = np.repeat(np.arange(20), 72)
    yaw = torch.from_numpy(np.tile(np.arange(72) * 5.0, 20)) * math.pi / 180
    count = len(labels)
    tilt = torch.from_numpy(rng.uniform(-0.08, 0.08, count)).float()
    exposure = torch.from_numpy(rng.uniform(0.8, 1.15, count)).view(-1, 1, 1, 1).float()
    scale_x = 0.8 * torch.sign(torch.cos(yaw) + 1e-9) * (0.35 + 0.65 * torch.cos(yaw).abs())
    zero = torch.zeros(count)
    up = F.interpolate(objects, size=(128, 128), mode="bilinear", align_corners=False)[torch.from_numpy(labels)]
    posed = _warp(up, 128, tilt, scale_x.float(), torch.full((count,), 0.8), zero, zero)
    return _dataset(_to_uint8(posed * exposure), labels, names, "objects-poses20")


def _subject_shots(root: str | Path | None, dataset: str, subjects: int, shots: int, seed: int) -> DataSet:
    """``subjects`` CIFAR-10 test images in gray, ``shots`` shots of each at 32 px: each shot turns
    it a little (tilt up to 10 degrees, a horizontal narrowing as a head turning), rescales and
    shifts it, and lights it from a random side with a random exposure."""
    gray, names = _cifar_gray_subjects(root, dataset, subjects)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(subjects), shots)
    count = len(labels)

    def draw(low: float, high: float) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(low, high, count)).float()

    scale = draw(0.9, 1.1)
    taken = _warp(gray[torch.from_numpy(labels)], 32, draw(-0.17, 0.17), scale * draw(0.8, 1.0), scale,
                  draw(-0.1, 0.1), draw(-0.1, 0.1))  # fmt: skip
    side = torch.linspace(-1, 1, 32).view(1, 1, 1, 32) * draw(-0.35, 0.35).view(-1, 1, 1, 1)
    lit = taken * (1 + side) * draw(0.7, 1.2).view(-1, 1, 1, 1)
    return _dataset(_to_uint8(lit), labels, names, dataset)


def load_objects_ids40(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """40 subjects, 10 shots each, 32 px grayscale (400 images): the shape of a small face
    collection (``_subject_shots``)."""
    return _subject_shots(root, "objects-ids40", 40, 10, SUITE_SEED + 1)


def load_objects_ids100(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """100 subjects, 20 shots each, 32 px grayscale (2,000 images): the many-cluster regime of
    ``digits-pairs100`` on photographic content instead of strokes (``_subject_shots``)."""
    return _subject_shots(root, "objects-ids100", 100, 20, SUITE_SEED + 2)


def _sized(data: DataSet, sizes: list[int], seed: int, name: str) -> DataSet:
    """``sizes[c]`` images of every class c of ``data``, drawn without replacement, in class order."""
    rng = np.random.default_rng(seed)
    keep = []
    for label, count in enumerate(sizes):
        members = np.flatnonzero(data.labels == label)
        if len(members) < count:
            raise DataError(f"{name}: class {label} has {len(members)} samples; {count} are needed")
        keep.append(rng.choice(members, count, replace=False))
    picked = np.concatenate(keep)
    return _dataset(data.inputs[torch.from_numpy(picked)], data.labels[picked], data.class_names, name)


def _tail(head: int, classes: int = 10, ratio: float = 10.0) -> list[int]:
    """A geometric tail: ``head`` images in the first class down to ``head / ratio`` in the last."""
    return [round(head * ratio ** (-c / (classes - 1))) for c in range(classes)]


def load_mnist_usps_sizes(root: str | Path | None = None, split: str = "test", **_: object) -> DataSet:
    """MNIST test images in USPS's class proportions (0.63 of USPS's sizes: 978 zeros to 446 eights)."""
    mnist = load_mnist_test(require_root(root, "mnist-usps-sizes"), split="test")
    return _sized(mnist, [int(n * 0.63) for n in USPS_CLASS_SIZES], 1, "mnist-usps-sizes")


def load_mnist_longtail(root: str | Path | None = None, split: str = "test", **_: object) -> DataSet:
    """MNIST test images with a 10:1 tail over the digits, 980 zeros to 98 nines."""
    mnist = load_mnist_test(require_root(root, "mnist-longtail"), split="test")
    return _sized(mnist, _tail(980), 2, "mnist-longtail")


def load_digits_longtail(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """scikit-learn's digits with a 10:1 tail over the digits, 174 zeros to 17 nines (embedded)."""
    return _sized(load_digits(), _tail(174), 3, "digits-longtail")


for _spec in (
    DataSourceSpec("digits-64", load_digits_64, "suite: digits upsampled to 64 px (embedded)", False, 10),
    DataSourceSpec("digits-rot20", load_digits_rot20, "suite: digits upright and turned 90 degrees, 20 classes "
                   "(embedded)", False, 20),
    DataSourceSpec("digits-pairs40", load_digits_pairs40, "suite: 400 two-digit numbers, 40 classes (embedded)",
                   False, 40),
    DataSourceSpec("digits-pairs100", load_digits_pairs100, "suite: 2,000 two-digit numbers, 100 classes "
                   "(embedded)", False, 100),
    DataSourceSpec("digits-pairs200", load_digits_pairs200, "suite: 4,000 two-digit numbers upright and turned, "
                   "200 classes (embedded)", False, 200),
    DataSourceSpec("mnist-1k", load_mnist_1k, "suite: 1,000 MNIST test images (--root: mnist-test or its parent)",
                   True, 10),
    DataSourceSpec("cifar10-2k", load_cifar10_2k, "suite: 2,000 CIFAR-10 test images (--root: cifar10-test or its "
                   "parent)", True, 10),
    DataSourceSpec("cifar10-flip20", load_cifar10_flip20, "suite: 2,000 CIFAR-10 test images, half upside down, "
                   "20 classes", True, 20),
    DataSourceSpec("objects-poses20", load_objects_poses20, "suite: 20 gray objects on black in 72 poses, "
                   "128 px (COIL-like; --root: cifar10-test or its parent)", True, 20),
    DataSourceSpec("objects-ids40", load_objects_ids40, "suite: 40 gray subjects x 10 shots, 32 px (a small "
                   "face collection's shape; --root: cifar10-test or its parent)", True, 40),
    DataSourceSpec("objects-ids100", load_objects_ids100, "suite: 100 gray subjects x 20 shots, 32 px (many "
                   "clusters, photographic content; --root: cifar10-test or its parent)", True, 100),
    DataSourceSpec("mnist-usps-sizes", load_mnist_usps_sizes, "suite: 5,854 MNIST test images in USPS's class "
                   "proportions (978 to 446 a class)", True, 10),
    DataSourceSpec("mnist-longtail", load_mnist_longtail, "suite: 4,005 MNIST test images, a 10:1 tail over the "
                   "classes (980 to 98)", True, 10),
    DataSourceSpec("digits-longtail", load_digits_longtail, "suite: 710 digits, a 10:1 tail over the classes "
                   "(174 to 17; embedded)", False, 10),
):  # fmt: skip
    register_source(_spec)
