"""Batched "strong" augmentation: RandAugment over the 14-op pool of CLSA, used by SACC.

Every sample draws its own ``n`` ops (with replacement) from AutoContrast, Brightness, Color,
Contrast, Equalize, Identity, Posterize, Rotate, Sharpness, ShearX, ShearY, Solarize, TranslateX
and TranslateY, each with its own random magnitude and sign. ``m`` is on RandAugment's 0..10
scale: an op's magnitude is drawn uniformly in [0, m / 10] of its full range (the "random
magnitude" of CLSA, ``papers/sacc.txt`` ref. [13]); m = 10 allows each op its full range.

Batching: all random numbers are drawn up front from the explicit generator (so the views depend
only on the generator state, as in ``weak.py``); the geometric ops of a sample are composed into
one affine matrix and applied with a single ``grid_sample`` before the photometric ops, which run
slot by slot on the subset of samples that drew them. Pixel semantics follow PIL's ImageOps /
ImageEnhance on the 8-bit grid (Equalize, Posterize and Solarize quantise to 256 levels).
Grayscale data stays grayscale: Color is the identity on one channel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from clustering.augment.weak import luma, to_float, warp

OPS = (
    "autocontrast", "brightness", "color", "contrast", "equalize", "identity", "posterize",
    "rotate", "sharpness", "shear_x", "shear_y", "solarize", "translate_x", "translate_y",
)  # fmt: skip
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_LEVEL = 10

# Full ranges (magnitude fraction 1.0), as in FixMatch/CLSA's RandAugment tables.
MAX_ROTATE_DEG = 30.0
MAX_SHEAR = 0.3
MAX_TRANSLATE = 0.3  # fraction of the image side
MAX_ENHANCE = 0.9  # enhancement factor 1 +- 0.9
MAX_POSTERIZE_DROP = 4  # keep 8 - 4 = 4 bits at full strength


def _per_sample(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------- photometric ops
# Each takes x (k, C, H, W) float in [0, 1], magnitude fraction f (k,) and sign (k,) of +-1.


def autocontrast(x: Tensor) -> Tensor:
    """Stretch every channel of every image to span [0, 1] (ImageOps.autocontrast, cutoff 0)."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    hi = x.amax(dim=(2, 3), keepdim=True)
    span = hi - lo
    stretched = (x - lo) / span.clamp_min(1e-12)
    return torch.where(span > 0, stretched, x)  # flat channels are left alone, as PIL does


def equalize(x: Tensor) -> Tensor:
    """Per-image, per-channel histogram equalisation on 256 levels (ImageOps.equalize), batched."""
    k, c, h, w = x.shape
    levels = (x * 255).round().long().clamp(0, 255).view(k * c, h * w)
    hist = torch.zeros(k * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels))
    # PIL: step = (pixels - count of the highest occupied level) // 255; step 0 means identity.
    top = torch.where(hist > 0, torch.arange(256, device=x.device), -1).amax(dim=1, keepdim=True)
    last = hist.gather(1, top)
    step = (hist.sum(dim=1, keepdim=True) - last) // 255
    before = hist.cumsum(dim=1) - hist  # pixels strictly below each level
    lut = ((before + step // 2) // step.clamp_min(1)).clamp(0, 255)
    lut = torch.where(step > 0, lut, torch.arange(256, device=x.device).expand_as(lut))
    return (lut.gather(1, levels).view(k, c, h, w).to(x.dtype)) / 255.0


def _factor(f: Tensor, sign: Tensor) -> Tensor:
    return _per_sample(1.0 + sign * MAX_ENHANCE * f)


def brightness(x: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    return x * _factor(f, sign)  # blend with black


def color(x: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x  # saturation has no meaning on one channel
    gray = luma(x)
    return gray + (x - gray) * _factor(f, sign)


def contrast(x: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    mean = luma(x).mean(dim=(1, 2, 3), keepdim=True)  # PIL blends with the mean gray level
    return mean + (x - mean) * _factor(f, sign)


def sharpness(x: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH filter (3x3, centre 5, rest 1, /13); border pixels kept, as PIL."""
    c = x.shape[1]
    kernel = torch.ones(3, 3, device=x.device, dtype=x.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / kernel.sum()).expand(c, 1, 3, 3)
    smooth = x.clone()
    smooth[:, :, 1:-1, 1:-1] = F.conv2d(x, kernel, groups=c)
    return smooth + (x - smooth) * _factor(f, sign)


def posterize(x: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    drop = (f * MAX_POSTERIZE_DROP).round()  # bits removed: 0..4
    scale = _per_sample(2.0**drop)
    levels = (x * 255).round()
    return torch.floor(levels / scale) * scale / 255.0


def solarize(x: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    threshold = _per_sample((256 * (1 - f)).round())  # 256 (f = 0) inverts nothing, 0 inverts all
    levels = (x * 255).round()
    return torch.where(levels >= threshold, 1.0 - x, x)


def _identity(x: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    return x


PHOTOMETRIC: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "autocontrast": lambda x, f, s: autocontrast(x),
    "brightness": brightness,
    "color": color,
    "contrast": contrast,
    "equalize": lambda x, f, s: equalize(x),
    "identity": _identity,
    "posterize": posterize,
    "sharpness": sharpness,
    "solarize": solarize,
}


# ----------------------------------------------------------------------------- geometric ops


def geometric_matrices(ops: Tensor, f: Tensor, sign: Tensor) -> Tensor:
    """(B, 2, 3) affine matrices (output -> input, normalised coordinates) composing each sample's
    geometric ops in slot order; samples without geometric ops get the identity.

    Args:
        ops: (B, n) op indices into ``OPS``. f, sign: (B, n) magnitude fractions and signs.
    """
    b, n = ops.shape
    eye = torch.eye(3, device=f.device, dtype=f.dtype)
    total = eye.expand(b, 3, 3).clone()
    for slot in range(n):
        op, v = ops[:, slot], f[:, slot] * sign[:, slot]
        m = eye.expand(b, 3, 3).clone()
        rot = op == OPS.index("rotate")
        angle = v * MAX_ROTATE_DEG * math.pi / 180
        m[:, 0, 0] = torch.where(rot, angle.cos(), m[:, 0, 0])
        m[:, 0, 1] = torch.where(rot, -angle.sin(), m[:, 0, 1])
        m[:, 1, 0] = torch.where(rot, angle.sin(), m[:, 1, 0])
        m[:, 1, 1] = torch.where(rot, angle.cos(), m[:, 1, 1])
        m[:, 0, 1] = torch.where(op == OPS.index("shear_x"), v * MAX_SHEAR, m[:, 0, 1])
        m[:, 1, 0] = torch.where(op == OPS.index("shear_y"), v * MAX_SHEAR, m[:, 1, 0])
        m[:, 0, 2] = torch.where(op == OPS.index("translate_x"), 2 * v * MAX_TRANSLATE, m[:, 0, 2])
        m[:, 1, 2] = torch.where(op == OPS.index("translate_y"), 2 * v * MAX_TRANSLATE, m[:, 1, 2])
        total = total @ m
    return total[:, :2, :]


# ----------------------------------------------------------------------------- the pipeline


def rand_augment(x: Tensor, n: int = 5, m: int = 10, generator: torch.Generator | None = None) -> Tensor:
    """One strongly augmented view of every image.

    Args:
        x: (B, C, H, W) float in [0, 1] (uint8 is accepted and scaled), on any device.
        n: ops per sample, drawn with replacement from ``OPS`` (SACC: 5).
        m: magnitude on the 0..10 scale (SACC: 10); each op draws its strength in [0, m / 10].
        generator: a generator on ``x.device`` (None uses the global RNG).

    Returns:
        (B, C, H, W) float32 in [0, 1].
    """
    if x.dim() != 4:
        raise ValueError(f"rand_augment expects (B, C, H, W) images, got shape {tuple(x.shape)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= m <= MAX_LEVEL:
        raise ValueError(f"m must be in [0, {MAX_LEVEL}], got {m}")
    x = to_float(x).clone()
    b, device = x.shape[0], x.device
    if n == 0 or b == 0:
        return x
    ops = torch.randint(len(OPS), (b, n), generator=generator, device=device)
    f = torch.rand(b, n, generator=generator, device=device) * (m / MAX_LEVEL)
    sign = torch.where(torch.rand(b, n, generator=generator, device=device) < 0.5, -1.0, 1.0)

    geometric = torch.stack([ops == OPS.index(name) for name in GEOMETRIC]).any(dim=0).any(dim=1)
    if geometric.any():
        x = warp(x, geometric_matrices(ops, f, sign))  # zero fill, like PIL's default
    for slot in range(n):
        for name, fn in PHOTOMETRIC.items():
            if name == "identity":
                continue
            sel = (ops[:, slot] == OPS.index(name)).nonzero().squeeze(1)
            if sel.numel():
                x[sel] = fn(x[sel], f[sel, slot], sign[sel, slot]).clamp(0, 1)
    return x.clamp(0, 1)
