"""Reading an ImageFolder's files: formats, and the channels the pictures really have."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clustering.config import TrainConfig
from clustering.data import DataError, load_dataset
from clustering.data.image_files import GRAY_TOLERANCE, channel_spread, read_images
from clustering.setup import resolve_config


def write(path: Path, pixels: np.ndarray, **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **save)
    return path


def test_netpbm_faces_load_at_their_shorter_side(tmp_path: Path) -> None:
    # The AT&T / ORL faces: 92 x 112 .pgm files, one folder per subject.
    rng = np.random.default_rng(0)
    for subject in range(3):
        for shot in range(2):
            write(tmp_path / f"s{subject}" / f"{shot}.pgm", rng.integers(0, 256, (112, 92), dtype=np.uint8))
    data = load_dataset("imagefolder", root=tmp_path)
    assert data.inputs.shape == (6, 1, 92, 92) and data.meta["native_size"] == 92
    assert data.meta["channels_note"] is None  # the files said gray themselves


def test_gray_pictures_in_colour_files_load_as_one_channel_and_get_grayscale_defaults(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for c in range(4):
        for i in range(5):
            gray = rng.integers(0, 256, (48, 48), dtype=np.uint8)
            write(tmp_path / f"c{c}" / f"{i}.jpg", np.stack([gray] * 3, axis=-1), quality=90)
    data = load_dataset("imagefolder", root=tmp_path)
    assert data.inputs.shape == (20, 1, 48, 48)
    assert "20 of 20 files are colour images" in data.meta["channels_note"]
    cfg = resolve_config(TrainConfig(dataset="imagefolder", root=str(tmp_path)), data, "cpu")
    assert cfg.augment in ("digits", "gray-flip") and cfg.image_size == 16  # not colour jitter at 24 px
    assert "colour images whose channels agree" in cfg.data_defaults["augment"]["reason"]


def test_one_gray_first_file_does_not_turn_a_colour_folder_gray(tmp_path: Path) -> None:
    write(tmp_path / "a" / "0.png", np.full((16, 16), 100, np.uint8))  # mode L, sorted first
    write(tmp_path / "a" / "1.png", np.full((16, 16, 3), (200, 10, 10), np.uint8))
    data = load_dataset("imagefolder", root=tmp_path)
    assert data.inputs.shape == (2, 3, 16, 16)
    assert data.inputs[1, :, 0, 0].tolist() == [200, 10, 10] and data.inputs[0, :, 0, 0].tolist() == [100] * 3


def test_sixteen_bit_files_are_scaled_not_clipped(tmp_path: Path) -> None:
    wide = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    write(tmp_path / "a" / "0.png", wide)
    write(tmp_path / "a" / "1.png", wide // 2)
    data = load_dataset("imagefolder", root=tmp_path)
    first = data.inputs[0, 0].numpy()
    assert data.inputs.shape == (2, 1, 16, 16)
    assert first.max() == 255 and first.min() == 0 and 120 <= np.median(first) <= 135  # a ramp, not white
    assert data.inputs[1, 0].numpy().max() == 255  # each file by its own peak (documented)


def test_float_files_within_zero_and_one_are_read_as_levels_not_black(tmp_path: Path) -> None:
    ramp = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)  # mode F, as float TIFFs are
    write(tmp_path / "a" / "0.tif", ramp)
    write(tmp_path / "a" / "1.tif", ramp * 1000)  # beyond 255: by its own peak, as 16-bit files
    data = load_dataset("imagefolder", root=tmp_path)
    unit, wide = data.inputs[0, 0].numpy(), data.inputs[1, 0].numpy()
    assert data.inputs.shape == (2, 1, 16, 16) and data.meta["channels_note"] is None
    assert unit.min() == 0 and unit.max() >= 254 and 120 <= np.median(unit) <= 135
    assert wide.max() == 255 and 120 <= np.median(wide) <= 135


def test_hidden_files_and_folders_are_not_images_or_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for c in range(2):
        for i in range(3):
            write(tmp_path / f"c{c}" / f"{i}.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    (tmp_path / "c0" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")  # macOS's copy of a file's metadata
    (tmp_path / ".DS_Store").write_bytes(b"Bud1")
    (tmp_path / ".ipynb_checkpoints").mkdir()  # Jupyter's, beside the class folders
    write(tmp_path / "__MACOSX" / "c0" / "0.png", np.zeros((12, 12), np.uint8))  # a Mac zip's shadow tree
    data = load_dataset("imagefolder", root=tmp_path)
    assert len(data) == 6 and data.num_classes == 2 and data.class_names == ["c0", "c1"]


def test_a_class_folder_without_images_is_named_in_the_error(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path / "digits" / f"{i}.png", np.full((12, 12), 40 * i, np.uint8))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not an image")
    with pytest.raises(DataError, match=r"'notes' .* hold no images"):
        load_dataset("imagefolder", root=tmp_path)


def test_unreadable_files_are_all_named_in_one_error(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path / "a" / f"{i}.png", np.full((12, 12), 40 * i, np.uint8))
    (tmp_path / "a" / "broken.png").write_bytes(b"not a png")
    (tmp_path / "a" / "cut.jpg").write_bytes(b"\xff\xd8\xff")  # a JPEG cut off after its marker
    with pytest.raises(DataError, match=r"2 of 5 files could not be read as images: .*broken\.png.*cut\.jpg"):
        load_dataset("imagefolder", root=tmp_path)


def test_channel_spread_and_tolerance_by_hand(tmp_path: Path) -> None:
    pixels = np.zeros((2, 2, 3), np.uint8)
    pixels[1, 1] = (10, 10 + GRAY_TOLERANCE, 10)
    assert channel_spread(pixels) == GRAY_TOLERANCE
    # Red and blue apart by more than the tolerance, green between them: colour, although each
    # neighbouring pair of channels agrees within it.
    ramp = np.array([[[0, GRAY_TOLERANCE, 2 * GRAY_TOLERANCE]]], np.uint8)
    assert channel_spread(ramp) == 2 * GRAY_TOLERANCE > GRAY_TOLERANCE
    write(tmp_path / "near.png", pixels)
    pixels[0, 0] = (0, 0, GRAY_TOLERANCE + 1)
    write(tmp_path / "far.png", pixels)
    near, note = read_images([tmp_path / "near.png"], 2)
    assert near.shape == (1, 2, 2, 1) and note is not None and near[0, 1, 1, 0] == 11  # the mean, rounded
    far, note = read_images([tmp_path / "near.png", tmp_path / "far.png"], 2)
    assert far.shape == (2, 2, 2, 3) and note is None


def test_a_folder_without_images_names_the_suffixes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "scan.dcm").write_bytes(b"DICM")
    with pytest.raises(DataError, match=r"\.pgm.*found: \.dcm"):
        load_dataset("imagefolder", root=tmp_path)
