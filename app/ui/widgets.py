"""Small reusable Streamlit pieces (image grids, CSV export)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.logic.images import DataView, thumbnails
from app.logic.selection import to_csv


def image_grid(
    view: DataView,
    positions: np.ndarray,
    index: np.ndarray,
    captions: list[str] | None = None,
    limit: int = 48,
    size: int = 64,
    empty: str = "No images.",
) -> None:
    """Thumbnails of ``positions`` (first ``limit``), or why there are none."""
    positions = np.asarray(positions, dtype=np.int64)
    if len(positions) == 0:
        st.caption(empty)
        return
    if not view.has_images:
        st.info(f"No images to show: {view.problem}")
        return
    shown = positions[:limit]
    rows = np.asarray(index)[shown]
    has_image = (rows >= 0) & (rows < len(view.images))
    if not has_image.all():  # a run of a larger data set than the one loaded here
        st.caption(f"{int((~has_image).sum())} of these samples have no image in the loaded data set "
                   f"({len(view.images):,} images)")  # fmt: skip
    thumbs = thumbnails(view.images, shown[has_image], index, size)
    caps = [captions[i] for i in np.flatnonzero(has_image)] if captions is not None else None
    st.image(thumbs, caption=caps, width=size + 8 if caps else size)
    if len(positions) > limit:
        st.caption(f"showing {limit} of {len(positions)}")


def download_csv(df: pd.DataFrame, name: str, label: str = "Export CSV", key: str | None = None) -> None:
    st.download_button(
        label,
        to_csv(df),
        file_name=name,
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
        key=key,
        disabled=df.empty,
    )
