"""Whether a data set's mirror images belong to it: the test behind horizontal flips on grayscale.

A flip is a fair augmentation when the mirror image of a picture is another picture of the same
kind: a turntable's far side, a face, a shirt. It is not for handwriting, where a mirrored 2 is no
digit at all. Which of the two a folder holds shows in its own pixels: mirror every image and ask
whether its mirror image lies as close to some other image of the set as the image itself does.
If the set is closed under mirroring, a mirror image is one more draw from the same distribution
and wins that comparison about half the time; if mirror images are foreign to it, almost never.
Measured on the development suite (``mirror_share``): handwriting 0.03-0.06 (digits 0.040,
MNIST-test 0.043, 40 two-digit numbers 0.027), the 40 subjects of 10 shots 0.138, the 20-object
turntable 0.602, CIFAR-10's photographs 0.507.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clustering.augment.weak import luma, to_float

#: Images compared (a fixed random subset of larger sets): enough for a share to +-0.02.
MIRROR_SAMPLE = 2000
#: Side at which the images are compared (the CPU's grayscale training size).
MIRROR_SIZE = 16
#: Flips on where the share reaches this: halfway between a set closed under mirroring (0.5) and
#: one that mirroring leaves (0).
MIRROR_SHARE_FOR_FLIPS = 0.25


def compared_pixels(images: Tensor, sample: int = MIRROR_SAMPLE, seed: int = 0) -> Tensor:
    """(N, C, H, W) uint8 or float images -> (n, 1, MIRROR_SIZE, MIRROR_SIZE) float luma in [0, 1]:
    a random subset of at most ``sample`` of them (from ``seed``), as the pixel tests compare them."""
    if len(images) > sample:
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:sample]
        images = images[keep]
    gray = luma(to_float(images))
    return F.interpolate(gray, size=(MIRROR_SIZE, MIRROR_SIZE), mode="bilinear", antialias=True, align_corners=False)


def mirror_share(images: Tensor, sample: int = MIRROR_SAMPLE, seed: int = 0) -> float:
    """The share of images whose horizontal mirror image is at least as close (Euclidean, in pixels
    at ``MIRROR_SIZE`` px, luma for colour) to another image of the set as the image itself is.

    Args:
        images: (N, C, H, W) uint8 or float in [0, 1]; N >= 2.
        sample: at most this many images are compared (a random subset, from ``seed``).

    Each image's nearest neighbour excludes itself, and its mirror image's excludes the image it
    came from (a symmetric picture's mirror is itself, which says nothing about the set).
    """
    if len(images) < 2:
        raise ValueError(f"mirror_share needs at least 2 images, got {len(images)}")
    x = compared_pixels(images, sample, seed)
    plain, mirrored = x.flatten(1), x.flip(-1).flatten(1)
    own = torch.cdist(plain, plain).fill_diagonal_(float("inf")).min(1).values
    flipped = torch.cdist(mirrored, plain).fill_diagonal_(float("inf")).min(1).values
    return float((flipped <= own).float().mean())
