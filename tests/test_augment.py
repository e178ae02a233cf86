"""Batched weak augmentations: shapes, ranges, determinism, and what each op does."""

from __future__ import annotations

import pytest
import torch

from clustering.augment import preset, weak_augment
from clustering.augment.weak import WeakAugment, affine_params, cutout, gaussian_blur, warp


def _images(n: int = 8, c: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


@pytest.mark.parametrize("name,channels", [("digits", 1), ("gray-flip", 1), ("natural", 3), ("natural-large", 3)])
def test_presets_keep_shape_and_range(name: str, channels: int) -> None:
    x = _images(c=channels, size=32)
    out = weak_augment(x, preset(name), torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1


def test_same_generator_state_gives_same_views() -> None:
    x = _images()
    a = weak_augment(x, preset("natural"), torch.Generator().manual_seed(5))
    b = weak_augment(x, preset("natural"), torch.Generator().manual_seed(5))
    c = weak_augment(x, preset("natural"), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_views_differ_per_sample() -> None:
    x = _images(n=2).repeat(4, 1, 1, 1)[:8]  # identical images in one batch
    x[:] = x[0]
    out = weak_augment(x, preset("natural"), torch.Generator().manual_seed(2))
    assert not torch.allclose(out[0], out[1])


def test_identity_settings_leave_images_unchanged() -> None:
    x = _images()
    out = weak_augment(x, preset("none"), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x.float() / 255, atol=1e-5, rtol=0)


def test_flip_only_mirrors_images() -> None:
    cfg = WeakAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=1.0, jitter=0.0, grayscale=0.0)
    x = _images()
    out = weak_augment(x, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x.float().flip(-1) / 255, atol=1e-5, rtol=0)


def test_digits_preset_has_no_flip_or_colour() -> None:
    cfg = preset("digits")
    assert cfg.hflip == 0 and cfg.jitter == 0 and cfg.grayscale == 0


def test_crop_zooms_in() -> None:
    # A crop of a quarter of the area magnifies: a centred 2x2 white square grows.
    x = torch.zeros(1, 1, 16, 16)
    x[..., 7:9, 7:9] = 1.0
    theta = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]])
    out = warp(x, theta)
    assert (out > 0.5).sum() > (x > 0.5).sum() * 3


def test_affine_params_without_randomness_is_identity() -> None:
    cfg = preset("none")
    theta = affine_params(cfg, 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    torch.testing.assert_close(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(3, 2, 3))


def test_cutout_zeroes_a_square() -> None:
    x = torch.ones(4, 1, 10, 10)
    out = cutout(x, 1.0, 0.3, torch.Generator().manual_seed(0))
    assert ((out == 0).sum(dim=(1, 2, 3)) == 9).all()


def test_blur_preserves_constant_images_and_smooths_noise() -> None:
    const = torch.full((2, 3, 16, 16), 0.4)
    torch.testing.assert_close(gaussian_blur(const, torch.tensor([1.0, 2.0])), const)
    noise = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert gaussian_blur(noise, torch.tensor([1.5, 1.5])).std() < noise.std()


def test_unknown_preset_lists_names() -> None:
    with pytest.raises(ValueError, match="valid: .*digits"):
        preset("fancy")
