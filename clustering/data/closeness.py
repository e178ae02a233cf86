"""How close an image's nearest neighbour is: the test behind UCCC's strong view on densely sampled sets.

A turntable (COIL-20 photographs an object every 5 degrees) or a video samples each class so
densely that an image's nearest other image is nearly the same picture: what varies within a
class is carried by the neighbours, a path of small steps, more than by what an augmentation
makes. ``neighbor_ratio`` puts a number on it: the median distance from an image to its nearest
other image over the median distance between two images of the set, in pixels at 16 px (luma for
colour), compared as ``clustering.data.mirror`` compares them. Measured on the development suite:
the 20-object turntable 0.128; handwriting 0.25-0.56 (digits-rot20 0.251, digits 0.297, the
long-tailed digits 0.306, MNIST-test 0.430, mnist-1k 0.461, 40 two-digit numbers 0.558); the
subjects of 20 and 10 shots 0.360 / 0.407; CIFAR-10's photographs 0.486. Independent noise is
near 1: every image is about as far from its nearest neighbour as from any other.
"""

from __future__ import annotations

import torch
from torch import Tensor

from clustering.data.mirror import MIRROR_SAMPLE, compared_pixels

#: Below this ratio a set counts as densely sampled: halfway between the suite's turntable (0.128)
#: and its closest other set (digits turned, 0.251).
DENSE_NEIGHBOR_RATIO = 0.2


def neighbor_ratio(images: Tensor, sample: int = MIRROR_SAMPLE, seed: int = 0) -> float:
    """The median distance from an image to its nearest other image, over the median distance
    between two distinct images (Euclidean, in pixels at 16 px, luma for colour).

    Args:
        images: (N, C, H, W) uint8 or float in [0, 1]; N >= 2.
        sample: at most this many images are compared (a random subset, from ``seed``).

    Exact copies of a picture count once.

    Returns:
        A ratio, in practice between 0 and about 1: near 0 where every image has a near twin, near
        1 for independent noise; 0 where all the images are the same picture.
    """
    if len(images) < 2:
        raise ValueError(f"neighbor_ratio needs at least 2 images, got {len(images)}")
    # Copies of one picture (a file saved twice) are one sample of the class, not a dense path.
    x = torch.unique(compared_pixels(images, sample, seed).flatten(1).double(), dim=0)
    if len(x) < 2:
        return 0.0
    distances = torch.cdist(x, x)
    rows, cols = torch.triu_indices(len(x), len(x), offset=1)
    typical = float(distances[rows, cols].median())
    nearest = float(distances.fill_diagonal_(float("inf")).min(1).values.median())
    return nearest / typical if typical > 0 else 0.0
