"""SACC's batched RandAugment: shapes, ranges, determinism, per-sample ops, and PIL semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from clustering.augment.strong import (
    OPS,
    autocontrast,
    color,
    equalize,
    geometric_matrices,
    posterize,
    rand_augment,
    solarize,
)


def _images(n: int = 8, c: int = 3, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_and_dtype(channels: int) -> None:
    x = _images(c=channels)
    out = rand_augment(x.float() / 255, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(rand_augment(x, generator=torch.Generator().manual_seed(0)), out)  # uint8 accepted


def test_deterministic_given_the_generator() -> None:
    x = _images(n=32).float() / 255
    a = rand_augment(x, generator=torch.Generator().manual_seed(3))
    b = rand_augment(x, generator=torch.Generator().manual_seed(3))
    c = rand_augment(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_each_sample_draws_its_own_ops() -> None:
    x = _images(n=1).float().repeat(16, 1, 1, 1) / 255  # 16 copies of one image
    out = rand_augment(x, generator=torch.Generator().manual_seed(0))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 8


def test_zero_ops_or_zero_magnitude_geometry_is_identity() -> None:
    x = _images().float() / 255
    assert torch.equal(rand_augment(x, n=0), x)
    ops = torch.tensor([[OPS.index("rotate"), OPS.index("shear_x")], [OPS.index("equalize"), OPS.index("identity")]])
    theta = geometric_matrices(ops, torch.zeros(2, 2), torch.ones(2, 2))
    torch.testing.assert_close(theta, torch.eye(3)[:2].expand(2, 2, 3))


def test_geometric_ops_compose_in_slot_order() -> None:
    ops = torch.tensor([[OPS.index("translate_x"), OPS.index("rotate")]])
    theta = geometric_matrices(ops, torch.ones(1, 2), torch.ones(1, 2))
    rot = torch.tensor([[np.cos(np.pi / 6), -np.sin(np.pi / 6), 0], [np.sin(np.pi / 6), np.cos(np.pi / 6), 0],
                        [0, 0, 1]], dtype=torch.float32)  # fmt: skip
    shift = torch.eye(3)
    shift[0, 2] = 0.6  # 0.3 of the side = 0.6 in normalised coordinates
    torch.testing.assert_close(theta[0], (shift @ rot)[:2])


def test_grayscale_stays_grayscale_and_color_is_identity_on_one_channel() -> None:
    x = _images(c=1).float() / 255
    f, s = torch.ones(8), torch.ones(8)
    assert torch.equal(color(x, f, s), x)
    assert rand_augment(x, generator=torch.Generator().manual_seed(0)).shape[1] == 1
    rgb = _images(c=3).float() / 255
    assert not torch.equal(color(rgb, f, s), rgb)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_histogram_ops_match_pil(mode: str) -> None:
    rng = np.random.default_rng(0)
    c = 1 if mode == "L" else 3
    for trial in range(12):
        lo, hi = sorted(rng.integers(0, 256, 2))
        if trial % 2:
            arr = rng.integers(lo, hi + 1, (12, 12, c), dtype=np.uint8)
        else:
            arr = (rng.random((12, 12, c)) ** 3 * 255).astype(np.uint8)
        img = Image.fromarray(arr[..., 0] if c == 1 else arr, mode)
        t = torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255
        as_u8 = lambda y: (y[0].permute(1, 2, 0).numpy() * 255).round().astype(int)  # noqa: E731
        ref = lambda im: np.asarray(im).reshape(12, 12, c).astype(int)  # noqa: E731
        assert (as_u8(equalize(t)) == ref(ImageOps.equalize(img))).all()
        assert np.abs(as_u8(autocontrast(t)) - ref(ImageOps.autocontrast(img))).max() <= 1
        one = torch.ones(1)
        assert (as_u8(posterize(t, one * 0.5, one)) == ref(ImageOps.posterize(img, 6))).all()  # drop 2 bits
        assert (as_u8(solarize(t, one * 0.5, one)) == ref(ImageOps.solarize(img, 128))).all()


def test_equalize_is_batched_per_image() -> None:
    x = _images(n=6).float() / 255
    x[2] = x[2] * 0.2  # a dark image equalises differently from the rest
    batched = equalize(x)
    single = torch.cat([equalize(x[i : i + 1]) for i in range(6)])
    assert torch.equal(batched, single)
    flat = torch.full((1, 1, 4, 4), 0.5)
    assert torch.equal(equalize(flat), (flat * 255).round() / 255)  # one level: unchanged


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        rand_augment(torch.rand(3, 8, 8))
    with pytest.raises(ValueError):
        rand_augment(torch.rand(2, 1, 8, 8), m=11)
