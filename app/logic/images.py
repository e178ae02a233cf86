"""Images for display: the run's data set re-loaded, converted to HWC and upscaled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DataView:
    """What the studio needs of a run's data set. ``images`` is None for vector data or when the
    data could not be loaded on this machine; ``problem`` then says why."""

    images: np.ndarray | None  # (N, H, W, C) uint8
    kind: str | None  # image | vector | None (not loaded)
    class_names: list[str]
    problem: str | None = None

    @property
    def has_images(self) -> bool:
        return self.images is not None


def load_data_view(
    dataset: str | None,
    root: str | None,
    split: str | None,
    image_size: int | None,
    label_column: str | None = None,
    num_clusters: int | None = None,
) -> DataView:
    """Re-load a run's data set via :func:`clustering.data.load_dataset` with the options the
    trainer passes (vectors need ``label_column`` / ``num_clusters``); never raises."""
    if not dataset:
        return DataView(None, None, [], "the run's config.json is missing, so its data set is unknown")
    try:
        from clustering.data import load_dataset

        data = load_dataset(
            dataset, root, split or "both", image_size, label_column=label_column, num_clusters=num_clusters
        )
    except Exception as exc:  # a missing root on this machine, an unknown source, unreadable files
        where = f" (root {root!r})" if root else ""
        return DataView(
            None, None, [], f"data set {dataset!r}{where} cannot be loaded on this machine: {exc}"
        )
    names = list(data.class_names)
    if data.kind != "image":
        return DataView(None, "vector", names, f"data set {dataset!r} holds vectors, not images")
    images = data.inputs.permute(0, 2, 3, 1).contiguous().numpy()
    return DataView(images, "image", names)


def upscale(image: np.ndarray, target: int = 64) -> np.ndarray:
    """Nearest-neighbour upscaling by an integer factor so small images (8-28 px) stay crisp.
    Grayscale (H, W, 1) becomes (H, W) for st.image."""
    img = np.asarray(image)
    h, w = img.shape[:2]
    factor = max(1, int(target) // max(h, w, 1))
    if factor > 1:
        img = np.repeat(np.repeat(img, factor, axis=0), factor, axis=1)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def thumbnails(
    images: np.ndarray, positions: np.ndarray, index: np.ndarray, target: int = 64
) -> list[np.ndarray]:
    """Upscaled images of the samples at ``positions`` (``index`` maps positions to data rows)."""
    rows = np.asarray(index)[np.asarray(positions, dtype=np.int64)]
    rows = rows[(rows >= 0) & (rows < len(images))]
    return [upscale(images[r], target) for r in rows]
