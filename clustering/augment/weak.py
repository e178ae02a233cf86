"""Batched "weak" (SimCLR-style) augmentations on image tensors.

Everything runs on the whole batch at once, on the batch's device: all geometric operations
(resized crop, rotation, translation, flip) are composed into one affine warp per image and
applied with a single ``grid_sample``; photometric operations are elementwise. Randomness comes
from an explicit ``torch.Generator`` so that a resumed run draws the same views.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class WeakAugment:
    """Parameters of the weak pipeline; every probability/strength 0 switches an op off.

    crop_scale / crop_ratio: area fraction and aspect ratio of the random resized crop.
    rotation: max absolute angle in degrees. translate: max shift as a fraction of the side.
    hflip: probability. jitter: probability of colour jitter with strengths
    (brightness, contrast, saturation, hue). grayscale / blur / cutout: probabilities.
    noise: std of additive Gaussian noise on [0, 1] pixels. cutout_size: side fraction.
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotation: float = 0.0
    translate: float = 0.0
    hflip: float = 0.5
    jitter: float = 0.8
    jitter_strength: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    grayscale: float = 0.2
    blur: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    noise: float = 0.0
    cutout: float = 0.0
    cutout_size: float = 0.25
    padding: str = "zeros"

    def as_dict(self) -> dict:
        return asdict(self)


#: Handwriting: no flips or colour ops (a flipped 2 is not a 2); small rotations and shifts, a mild
#: crop, noise and cutout (as in the prototype that made UCCC work on digits).
_HANDWRITING = WeakAugment(
    crop_scale=(0.6, 1.0), rotation=15.0, translate=1 / 16, hflip=0.0, jitter=0.0,
    grayscale=0.0, noise=0.05, cutout=0.5, cutout_size=0.3,
)  # fmt: skip

PRESETS: dict[str, WeakAugment] = {
    "digits": _HANDWRITING,
    # Grayscale shapes whose mirror images belong to the data (a turntable's far side, faces,
    # clothing): the handwriting preset plus horizontal flips, still no colour operations.
    "gray-flip": replace(_HANDWRITING, hflip=0.5),
    # SimCLR / CC on small natural images (CIFAR): crop, flip, colour jitter, grayscale.
    "natural": WeakAugment(crop_scale=(0.2, 1.0), jitter_strength=(0.4, 0.4, 0.4, 0.1)),
    # Large natural images (STL-10, ImageNet subsets): add Gaussian blur as SimCLR does.
    "natural-large": WeakAugment(crop_scale=(0.08, 1.0), blur=0.5),
    # No augmentation at all (evaluation, debugging).
    "none": WeakAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, jitter=0.0, grayscale=0.0),
}  # fmt: skip


def preset(name: str, image_size: int | None = None, **overrides: object) -> WeakAugment:
    """A named preset; ``natural`` turns into ``natural-large`` for images of 64 px or more."""
    if name not in PRESETS:
        raise ValueError(f"unknown augmentation preset {name!r}; valid: {', '.join(sorted(PRESETS))}")
    if name == "natural" and image_size is not None and image_size >= 64:
        name = "natural-large"
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


def _uniform(n: int, low: float, high: float, g: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def _bernoulli(n: int, p: float, g: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.rand(n, generator=g, device=device) < p


def affine_params(cfg: WeakAugment, n: int, g: torch.Generator | None, device: torch.device) -> Tensor:
    """(n, 2, 3) affine matrices (output -> input normalised coordinates) of the geometric ops."""
    area = _uniform(n, *cfg.crop_scale, g, device)
    log_ratio = _uniform(n, math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]), g, device)
    ratio = log_ratio.exp()
    w = (area * ratio).sqrt().clamp(max=1.0)
    h = (area / ratio).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, generator=g, device=device) * 2 - 1) * (1 - h)
    angle = _uniform(n, -cfg.rotation, cfg.rotation, g, device) * (math.pi / 180)
    tx = _uniform(n, -cfg.translate, cfg.translate, g, device) * 2  # normalised coords span 2
    ty = _uniform(n, -cfg.translate, cfg.translate, g, device) * 2
    flip = torch.where(_bernoulli(n, cfg.hflip, g, device), -1.0, 1.0)
    cos, sin = angle.cos(), angle.sin()
    theta = torch.zeros(n, 2, 3, device=device)
    # input = diag(w, h) @ (R @ diag(flip, 1) @ out + t) + c
    theta[:, 0, 0] = w * cos * flip
    theta[:, 0, 1] = -w * sin
    theta[:, 1, 0] = h * sin * flip
    theta[:, 1, 1] = h * cos
    theta[:, 0, 2] = w * tx + cx
    theta[:, 1, 2] = h * ty + cy
    return theta


def warp(x: Tensor, theta: Tensor, padding: str = "zeros") -> Tensor:
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def luma(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 1, H, W) grayscale (ITU-R 601 weights for RGB)."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def _per_sample(v: Tensor) -> Tensor:
    return v.view(-1, 1, 1, 1)


def color_jitter(x: Tensor, cfg: WeakAugment, g: torch.Generator | None) -> Tensor:
    n, device = x.shape[0], x.device
    apply = _per_sample(_bernoulli(n, cfg.jitter, g, device).to(x.dtype))
    b, c, s, hue = cfg.jitter_strength
    out = x * _per_sample(_uniform(n, 1 - b, 1 + b, g, device))
    mean = luma(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * _per_sample(_uniform(n, 1 - c, 1 + c, g, device)) + mean
    if x.shape[1] == 3:
        gray = luma(out)
        out = gray + (out - gray) * _per_sample(_uniform(n, 1 - s, 1 + s, g, device))
        out = rotate_hue(out, _uniform(n, -hue, hue, g, device))
    out = out.clamp(0, 1)
    return apply * out + (1 - apply) * x


def rotate_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` turns (per sample) in YIQ space (a linear approximation of HSV)."""
    to_yiq = torch.tensor(
        [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device, dtype=x.dtype
    )
    from_yiq = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,bjhw->bihw", to_yiq, x)
    angle = shift * 2 * math.pi
    cos, sin = _per_sample(angle.cos()).squeeze(1), _per_sample(angle.sin()).squeeze(1)
    i, q = yiq[:, 1], yiq[:, 2]
    yiq = torch.stack([yiq[:, 0], i * cos - q * sin, i * sin + q * cos], dim=1)
    return torch.einsum("ij,bjhw->bihw", from_yiq, yiq)


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample separable Gaussian blur; kernel size ~ 10% of the side, odd."""
    n, c, h, w = x.shape
    k = max(3, int(0.1 * min(h, w)) | 1)
    coords = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    kernel = torch.exp(-(coords[None] ** 2) / (2 * sigma[:, None].to(x.dtype) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (n, k)
    kernel = kernel.repeat_interleave(c, dim=0)  # (n*c, k)
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (k // 2, k // 2, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, k // 2, k // 2), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def cutout(x: Tensor, p: float, size: float, g: torch.Generator | None) -> Tensor:
    n, _, h, w = x.shape
    device = x.device
    apply = _bernoulli(n, p, g, device)
    side_h, side_w = max(1, round(size * h)), max(1, round(size * w))
    top = (torch.rand(n, generator=g, device=device) * (h - side_h + 1)).floor()
    left = (torch.rand(n, generator=g, device=device) * (w - side_w + 1)).floor()
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = (rows >= top.view(-1, 1, 1)) & (rows < top.view(-1, 1, 1) + side_h)
    inside = inside & (cols >= left.view(-1, 1, 1)) & (cols < left.view(-1, 1, 1) + side_w)
    mask = (inside & apply.view(-1, 1, 1)).unsqueeze(1)
    return x.masked_fill(mask, 0.0)


def to_float(images: Tensor) -> Tensor:
    """uint8 [0, 255] -> float [0, 1]; float input is passed through."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def weak_augment(images: Tensor, cfg: WeakAugment, generator: torch.Generator | None = None) -> Tensor:
    """One random view of every image.

    Args:
        images: (B, C, H, W) uint8 or float in [0, 1], on any device.
        cfg: the pipeline's parameters.
        generator: a generator on ``images.device`` (None uses the global RNG).

    Returns:
        (B, C, H, W) float32 in [0, 1].
    """
    x = to_float(images)
    n, device = x.shape[0], x.device
    x = warp(x, affine_params(cfg, n, generator, device), cfg.padding)
    if cfg.jitter > 0:
        x = color_jitter(x, cfg, generator)
    if cfg.grayscale > 0 and x.shape[1] == 3:
        gray = _bernoulli(n, cfg.grayscale, generator, device).view(-1, 1, 1, 1)
        x = torch.where(gray, luma(x).expand_as(x), x)
    if cfg.blur > 0:
        sigma = _uniform(n, *cfg.blur_sigma, generator, device)
        blurred = gaussian_blur(x, sigma)
        x = torch.where(_bernoulli(n, cfg.blur, generator, device).view(-1, 1, 1, 1), blurred, x)
    if cfg.noise > 0:
        x = (x + cfg.noise * torch.randn(x.shape, generator=generator, device=device)).clamp(0, 1)
    if cfg.cutout > 0:
        x = cutout(x, cfg.cutout, cfg.cutout_size, generator)
    return x
