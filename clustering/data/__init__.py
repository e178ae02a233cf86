"""Data sources: a registry of loaders returning whole in-memory :class:`DataSet` objects."""

from __future__ import annotations

from pathlib import Path

from clustering.data import sources as _sources  # noqa: F401  (registers the built-in sources)
from clustering.data import suite as _suite  # noqa: F401  (registers the development suite)
from clustering.data import vectors as _vectors  # noqa: F401  (registers 'vectors')
from clustering.data.base import DataError, DataSet, DataSourceSpec, get_source, register_source, source_names

__all__ = ["DataError", "DataSet", "DataSourceSpec", "get_source", "load_dataset", "register_source", "source_names"]


def load_dataset(
    name: str,
    root: str | Path | None = None,
    split: str = "both",
    image_size: int | None = None,
    download: bool = False,
    **options: object,
) -> DataSet:
    """Load a registered data set; images at their native size, or resized once to ``image_size``.

    Raises:
        DataError: unknown name (listing the valid ones), missing root, unreadable files.
    """
    spec = get_source(name)
    kwargs = dict(options)
    if name == "imagefolder":
        kwargs["image_size"] = image_size
    data = spec.loader(root=root, split=split, download=download, **kwargs)
    if data.kind == "image" and image_size:
        data = data.resized(int(image_size))
    return data
