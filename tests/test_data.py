"""Data sources: digits, IDX files, ImageFolder, and the shared benchmark data when present."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clustering.data import DataError, load_dataset, source_names
from clustering.data.sources import CIFAR100_COARSE, read_idx

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_digits_is_embedded_native_and_resized_once() -> None:
    data = load_dataset("digits")  # native 8 px; the run's size is a data-aware default
    assert data.inputs.shape == (1797, 1, 8, 8) and data.inputs.dtype == torch.uint8
    assert load_dataset("digits", image_size=16).inputs.shape == (1797, 1, 16, 16)
    assert data.labels.shape == (1797,) and data.num_classes == 10 and data.inputs.max() > 200
    assert len(load_dataset("digits", split="train")) == 1500
    assert len(load_dataset("digits", split="test")) == 297
    assert load_dataset("digits", image_size=8).inputs.shape[-1] == 8


def test_unknown_dataset_and_split_list_valid_choices() -> None:
    with pytest.raises(DataError, match="valid: .*digits"):
        load_dataset("imagenet-21k")
    with pytest.raises(DataError, match="valid: train, test, both"):
        load_dataset("digits", split="validation")
    assert {"digits", "mnist-test", "imagefolder", "cifar10", "cifar100-20", "stl10", "mnist"} <= set(source_names())


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_test_reads_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 28, 28))
    labels = np.array([3, 1, 4, 1, 5])
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels)
    data = load_dataset("mnist-test", root=tmp_path, split="test")
    np.testing.assert_array_equal(data.inputs[:, 0].numpy(), images)
    np.testing.assert_array_equal(data.labels, labels)


def test_truncated_idx_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">BBBB", 0, 0, 8, 1) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_imagefolder_with_and_without_labels(tmp_path: Path) -> None:
    for cls, colour in (("cats", (30, 60, 90)), ("dogs", (220, 20, 120))):
        (tmp_path / "labelled" / cls).mkdir(parents=True)
        for i in range(3):
            pixels = np.broadcast_to(np.array(colour, np.uint8), (20, 20, 3))
            Image.fromarray(np.ascontiguousarray(pixels)).save(tmp_path / "labelled" / cls / f"{i}.png")
    data = load_dataset("imagefolder", root=tmp_path / "labelled", image_size=8)
    assert data.inputs.shape == (6, 3, 8, 8) and data.class_names == ["cats", "dogs"]
    np.testing.assert_array_equal(data.labels, [0, 0, 0, 1, 1, 1])
    assert data.inputs[0, :, 0, 0].tolist() == [30, 60, 90] and data.num_classes == 2

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.fromarray(np.full((10, 10), 9 * i, np.uint8)).save(flat / f"{i}.png")
    unlabeled = load_dataset("imagefolder", root=flat, image_size=10)
    assert unlabeled.labels is None and unlabeled.inputs.shape == (4, 1, 10, 10)


def test_cifar100_coarse_table_is_a_20_way_partition() -> None:
    assert len(CIFAR100_COARSE) == 100
    assert sorted(set(CIFAR100_COARSE)) == list(range(20))
    assert all(CIFAR100_COARSE.count(c) == 5 for c in range(20))


def test_torchvision_set_without_files_says_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--download"):
        load_dataset("cifar10", root=tmp_path)


@pytest.mark.skipif(not (SHARED / "mnist-test").is_dir(), reason="../shared/data/mnist-test is not present")
def test_shared_mnist_test() -> None:
    data = load_dataset("mnist-test", root=SHARED / "mnist-test")
    assert data.inputs.shape == (10000, 1, 28, 28)
    counts = np.bincount(data.labels)
    assert counts.min() == 892 and counts.max() == 1135


@pytest.mark.skipif(not (SHARED / "cifar10-test").is_dir(), reason="../shared/data/cifar10-test is not present")
def test_shared_cifar10_imagefolder() -> None:
    data = load_dataset("imagefolder", root=SHARED / "cifar10-test")
    assert data.inputs.shape == (10000, 3, 32, 32) and len(data.class_names) == 10
