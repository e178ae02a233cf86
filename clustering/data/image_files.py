"""Decoding a folder's image files into one uint8 array, with the channels the pictures really have.

What the defaults depend on first is the number of channels (:mod:`clustering.data_defaults`:
grayscale gets 16 px on a CPU and no colour augmentation). A file's mode does not always say it:
grayscale pictures are often stored as RGB (JPEG exports, images written by a colour pipeline,
palette GIFs), and reading the mode of the first file alone took such a folder for colour, so it
got colour jitter, flips and 3-channel convolutions (and a folder whose first file was gray lost
the colour of the rest). Here every file is decoded to RGB and the
folder is grayscale when no image's channels differ by more than ``GRAY_TOLERANCE`` levels (JPEG
rounding) on any pixel; then one channel is kept, which loses nothing of what the files hold.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from clustering.data.base import DataError

#: What PIL decodes and torchvision's ImageFolder accepts, plus Netpbm's family (the AT&T/ORL
#: faces are .pgm) and GIF (the Yale faces).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm", ".pnm")
#: Channels this close (in 0-255 levels) on every pixel are one gray level stored three times.
GRAY_TOLERANCE = 2
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I", "F")  # 16-bit, 32-bit integer, float
#: What PIL raises on a file it cannot decode (UnidentifiedImageError is an OSError; truncated or
#: malformed files raise the others).
UNREADABLE = (OSError, ValueError, SyntaxError)


def common_size(paths: list[Path], sample: int = 64) -> int:
    """The most common shorter side among the first ``sample`` images (read from headers only)."""
    from PIL import Image

    sizes: Counter[int] = Counter()
    for path in paths[:sample]:
        try:
            with Image.open(path) as img:
                sizes[min(img.size)] += 1
        except UNREADABLE:
            continue  # read_images names every such file
    if not sizes:
        raise DataError(f"none of the first {min(sample, len(paths))} image files could be read, e.g. {paths[0]}")
    return sizes.most_common(1)[0][0]


def read_rgb(path: Path, size: int) -> tuple[np.ndarray, bool]:
    """One file decoded, resized (bilinear, the whole picture) and as RGB: (size, size, 3) uint8, and
    whether the file itself is a grayscale mode.

    Wide grayscale (16-bit or float files) is scaled into 0-255 by its own maximum, not clipped at
    255 as PIL's conversion does (a 16-bit scan would turn white); a float file within [0, 1] (the
    usual range of float images) is read as 0-255, not truncated to black and 1."""
    from PIL import Image

    with Image.open(path) as img:
        gray_mode = img.mode in ("L", "1", "LA", *_WIDE_MODES)
        if img.mode in _WIDE_MODES:
            wide = np.asarray(img, dtype=np.float32)
            peak = float(wide.max()) if wide.size else 0.0
            scale = 255.0 / peak if peak > 255.0 else 1.0
            if img.mode == "F" and 0.0 < peak <= 1.0 and float(wide.min()) >= 0.0:
                scale = 255.0
            img = Image.fromarray(np.clip(wide * scale, 0, 255).astype(np.uint8))
        img = img.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img), gray_mode


def channel_spread(rgb: np.ndarray) -> int:
    """The largest difference between two channels of any pixel of (..., 3) uint8 images (the
    pixel's brightest channel less its darkest, so red against blue counts too)."""
    return int((rgb.max(axis=-1).astype(np.int16) - rgb.min(axis=-1)).max())


def read_images(paths: list[Path], size: int) -> tuple[np.ndarray, str | None]:
    """(N, size, size, C) uint8, C = 1 when every picture is gray and 3 otherwise; and a note when
    gray pictures came from colour files (None when the files' modes said it)."""
    images = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    spread, colour_files = 0, 0
    unreadable: list[str] = []
    for i, path in enumerate(paths):
        try:
            images[i], gray_mode = read_rgb(path, size)
        except UNREADABLE as exc:
            unreadable.append(f"{path} ({type(exc).__name__})")
            continue
        colour_files += not gray_mode
        if spread <= GRAY_TOLERANCE:  # one colour image settles it
            spread = max(spread, channel_spread(images[i]))
    if unreadable:
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        raise DataError(f"{len(unreadable)} of {len(paths)} files could not be read as images: "
                        f"{', '.join(unreadable[:5])}{more}; remove or replace them")  # fmt: skip
    if spread > GRAY_TOLERANCE:
        return images, None
    # The channels agree to within rounding: keep their mean, one channel (in chunks: a folder of
    # 10,000 images at 128 px is 0.5 GB as RGB).
    gray = np.empty((len(paths), size, size, 1), dtype=np.uint8)
    for lo in range(0, len(paths), 1024):
        total = images[lo : lo + 1024].sum(axis=-1, keepdims=True, dtype=np.uint16)
        gray[lo : lo + 1024] = (total + 1) // 3
    if not colour_files:
        return gray, None
    return gray, (f"{colour_files} of {len(paths)} files are colour images whose channels agree within "
                  f"{GRAY_TOLERANCE} levels: loaded as one gray channel")  # fmt: skip
