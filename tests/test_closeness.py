"""How near an image's nearest neighbour is (the densely-sampled-set test of UCCC's strong view)."""

from __future__ import annotations

import statistics

import pytest
import torch

from clustering.data import load_dataset
from clustering.data.closeness import DENSE_NEIGHBOR_RATIO, neighbor_ratio
from clustering.data.mirror import compared_pixels


def turntable(objects: int, poses: int, seed: int = 0) -> torch.Tensor:
    """(objects * poses, 1, 32, 32) uint8: each object a path of ``poses`` small steps from one random
    picture to another (a blend), as a turntable's poses change little from one to the next."""
    g = torch.Generator().manual_seed(seed)
    start, end = torch.rand(objects, 1, 1, 32, 32, generator=g), torch.rand(objects, 1, 1, 32, 32, generator=g)
    t = torch.linspace(0, 1, poses).view(1, poses, 1, 1, 1)
    return (((1 - t) * start + t * end).flatten(0, 1) * 255).to(torch.uint8)


def naive_ratio(images: torch.Tensor) -> float:
    """The definition, one pair at a time: the median over images of the distance to the nearest
    other image, over the median distance of all distinct pairs (lower medians, as torch's)."""
    rows = compared_pixels(images).flatten(1).double().tolist()
    x = torch.tensor([r for i, r in enumerate(rows) if r not in rows[:i]], dtype=torch.double)  # copies once
    n = len(x)
    dist = [[float((x[i] - x[j]).norm()) for j in range(n)] for i in range(n)]
    nearest = [min(dist[i][j] for j in range(n) if j != i) for i in range(n)]
    pairs = [dist[i][j] for i in range(n) for j in range(i + 1, n)]
    return statistics.median_low(nearest) / statistics.median_low(pairs)


def test_matches_the_definition_computed_naively() -> None:
    images = torch.cat([turntable(3, 8), (torch.rand(9, 1, 32, 32, generator=torch.Generator().manual_seed(5))
                                          * 255).to(torch.uint8)])  # fmt: skip
    assert neighbor_ratio(images) == pytest.approx(naive_ratio(images), rel=1e-9)
    with_copies = torch.cat([images, images[:4]])  # four files saved twice
    assert neighbor_ratio(with_copies) == pytest.approx(naive_ratio(with_copies), rel=1e-9)


def test_a_turntable_is_dense_and_independent_noise_is_not() -> None:
    assert neighbor_ratio(turntable(4, 32)) < DENSE_NEIGHBOR_RATIO / 2
    noise = (torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    assert neighbor_ratio(noise) > 0.8  # every image about as far from its nearest neighbour as from any


def test_copies_count_once_and_identical_images_do_not_divide_by_zero() -> None:
    noise = (torch.rand(50, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 255).to(torch.uint8)
    assert neighbor_ratio(torch.cat([noise, noise])) == neighbor_ratio(noise) > 0.8  # each file saved twice
    shift = torch.randint(1, 4, (50, 1, 16, 16), generator=torch.Generator().manual_seed(3))
    near = (noise.int() + shift).clamp(0, 255).to(torch.uint8)  # every pixel 1-3 levels off
    assert neighbor_ratio(torch.cat([noise, near])) < 0.05  # near twins do count
    assert neighbor_ratio(torch.zeros(5, 1, 16, 16, dtype=torch.uint8)) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        neighbor_ratio(noise[:1])


def test_colour_is_compared_as_luma_and_sampling_is_seeded() -> None:
    gray = torch.cat([turntable(20, 30), turntable(20, 30, seed=1)])
    assert neighbor_ratio(gray, sample=500, seed=3) == neighbor_ratio(gray, sample=500, seed=3)
    assert neighbor_ratio(gray.expand(-1, 3, -1, -1), sample=500) == pytest.approx(neighbor_ratio(gray, sample=500))


def test_handwriting_is_above_the_bar() -> None:
    assert neighbor_ratio(load_dataset("digits").inputs) > DENSE_NEIGHBOR_RATIO
