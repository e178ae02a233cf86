"""Whether a data set's mirror images belong to it (the grayscale flip rule's test)."""

from __future__ import annotations

import pytest
import torch

from clustering.data import load_dataset
from clustering.data.mirror import MIRROR_SHARE_FOR_FLIPS, mirror_share


def lopsided(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 1, 16, 16) uint8: noise over a ramp bright on the left, as glyphs are lopsided."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(1, 0, 16).view(1, 1, 1, 16)
    return ((0.6 * ramp + 0.4 * torch.rand(n, 1, 16, 16, generator=g)) * 255).to(torch.uint8)


def naive_share(images: torch.Tensor) -> float:
    """The definition, one image at a time: is the mirror image's nearest other image at least as
    close as the image's own nearest other image?"""
    x = images.float().flatten(1) / 255
    m = images.flip(-1).float().flatten(1) / 255
    wins = 0
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        own = min(float((x[i] - x[j]).norm()) for j in others)
        mirrored = min(float((m[i] - x[j]).norm()) for j in others)
        wins += mirrored <= own
    return wins / len(x)


def test_lopsided_images_have_foreign_mirror_images() -> None:
    assert mirror_share(lopsided(300)) == 0.0


def test_a_set_holding_each_mirror_image_is_closed_under_mirroring() -> None:
    images = lopsided(100)
    both = torch.cat([images, images.flip(-1)])
    assert mirror_share(both) == 1.0  # every mirror image is in the set itself


def test_iid_noise_is_mirror_invariant_and_wins_about_half_the_time() -> None:
    noise = (torch.rand(600, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    assert 0.4 < mirror_share(noise) < 0.6


def test_matches_the_definition_computed_naively() -> None:
    images = torch.cat([lopsided(30, seed=2), lopsided(30, seed=3).flip(-1)])
    images = images + (torch.rand(60, 1, 16, 16, generator=torch.Generator().manual_seed(4)) * 40).to(torch.uint8)
    assert mirror_share(images) == pytest.approx(naive_share(images))


def test_symmetric_pictures_do_not_count_their_own_mirror() -> None:
    # A symmetric picture is its own mirror image; that match is excluded, so two distinct
    # symmetric pictures far apart from a lopsided crowd still compare with the crowd only.
    sym = torch.zeros(2, 1, 16, 16, dtype=torch.uint8)
    sym[0, :, 4:12, 4:12], sym[1, :, 6:10, :] = 255, 255
    share = mirror_share(torch.cat([sym, lopsided(50)]))
    assert share == pytest.approx(2 / 52)  # only the two symmetric pictures' mirrors are as close as they are


def test_colour_is_compared_as_luma_and_sampling_is_seeded() -> None:
    gray = lopsided(3000)
    assert mirror_share(gray, sample=500, seed=0) == mirror_share(gray, sample=500, seed=0)
    colour = gray.expand(-1, 3, -1, -1)
    assert mirror_share(colour, sample=500) == mirror_share(gray, sample=500)
    with pytest.raises(ValueError, match="at least 2"):
        mirror_share(gray[:1])


def test_handwriting_stays_below_the_bar() -> None:
    assert mirror_share(load_dataset("digits").inputs) < MIRROR_SHARE_FOR_FLIPS
