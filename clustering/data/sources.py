"""Registered data sources. Each loader returns a whole :class:`DataSet` in memory.

Nothing here downloads unless the user passes ``download=True`` (CLI ``--download``).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from clustering.data.base import DataError, DataSet, DataSourceSpec, register_source, require_root
from clustering.data.image_files import IMAGE_SUFFIXES, common_size, read_images

SPLITS = ("train", "test", "both")

# The standard CIFAR-100 fine -> 20 superclass table (index = fine label).
CIFAR100_COARSE = [
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
]  # fmt: skip
CIFAR100_SUPERCLASSES = [
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
]  # fmt: skip


def _check_split(split: str, allowed: tuple[str, ...] = SPLITS) -> str:
    if split not in allowed:
        raise DataError(f"unknown split {split!r}; valid: {', '.join(allowed)}")
    return split


# ----------------------------------------------------------------------------- digits (embedded)


def load_digits(root: str | Path | None = None, split: str = "both", **_: object) -> DataSet:
    """scikit-learn's 1,797 handwritten digits (8x8, values 0..16), shipped with scikit-learn.

    Splits: ``train`` is the first 1,500 images, ``test`` the last 297 (for inductive checks).
    """
    from sklearn.datasets import load_digits as sk_digits

    _check_split(split)
    bunch = sk_digits()
    images = torch.from_numpy(np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8))[:, None]
    labels = bunch.target.astype(np.int64)
    select = {"train": slice(0, 1500), "test": slice(1500, None), "both": slice(None)}[split]
    return DataSet(
        inputs=images[select].contiguous(),
        labels=labels[select],
        class_names=[str(d) for d in range(10)],
        name="digits",
        num_classes=10,
    )


# ----------------------------------------------------------------------------- MNIST IDX files


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {str(path)!r}: {exc}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{str(path)!r} is not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != 0x08:
        raise DataError(f"{str(path)!r}: only unsigned-byte IDX files are supported (type 0x{dtype_code:02x})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{str(path)!r} is truncated: {body.size} bytes for shape {dims}")
    return body.reshape(dims)


def _find(root: Path, stems: list[str]) -> Path:
    for stem in stems:
        for candidate in (root / stem, root / f"{stem}.gz"):
            if candidate.exists():
                return candidate
    raise DataError(f"none of {', '.join(stems)} (or .gz) found in {str(root)!r}")


def load_mnist_test(root: str | Path | None = None, split: str = "test", **_: object) -> DataSet:
    """The MNIST test split read straight from its IDX files in ``root`` (or ``root/mnist-test``)."""
    _check_split(split, ("test", "both"))
    folder = require_root(root, "mnist-test")
    if (folder / "mnist-test").is_dir():
        folder = folder / "mnist-test"
    images = read_idx(_find(folder, ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]))
    labels = read_idx(_find(folder, ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]))
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels in {str(folder)!r}")
    return DataSet(
        inputs=torch.from_numpy(images.copy())[:, None],
        labels=labels.astype(np.int64),
        class_names=[str(d) for d in range(10)],
        name="mnist-test",
        num_classes=10,
    )


# ----------------------------------------------------------------------------- ImageFolder


#: Images larger than this are decoded at this size when no size is asked for: a folder of 10,000
#: photos at full resolution would not fit in memory, and no default trains above it.
MAX_NATIVE_LOAD = 128


def _visible(path: Path, base: Path) -> bool:
    """Not hidden at any level under ``base``: no dot name (.DS_Store, macOS's ._ copies of every
    file, .ipynb_checkpoints) and no __MACOSX folder (a zip made on a Mac)."""
    return not any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(base).parts)


def _is_image(path: Path, base: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and _visible(path, base) and path.is_file()


def load_imagefolder(
    root: str | Path | None = None,
    split: str = "both",
    image_size: int | None = None,
    classes_file: str | Path | None = None,
    **_: object,
) -> DataSet:
    """Images under ``root/<class>/*`` (labelled) or directly under ``root`` (unlabelled).

    Images are decoded and resized to ``image_size`` once, at load; without one, to the folder's
    most common size (at most ``MAX_NATIVE_LOAD``), kept in ``meta["native_size"]``.
    ``classes_file`` (one class folder name per line) picks a subset, as ImageNet-10 / ImageNet-Dogs do.
    One channel when every image is gray, whatever its file's mode (:mod:`clustering.data.image_files`;
    ``meta["channels_note"]`` says so when colour files held gray pictures).
    """
    folder = require_root(root, "imagefolder")
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p, folder))
    if classes_file is not None:
        wanted = [ln.strip() for ln in Path(classes_file).read_text().splitlines() if ln.strip()]
        missing = [w for w in wanted if not (folder / w).is_dir()]
        if missing:
            raise DataError(f"classes {missing} from {classes_file} are not folders of {str(folder)!r}")
        class_dirs = [folder / w for w in wanted]
    files: list[tuple[Path, int]] = []
    if class_dirs:
        for label, cdir in enumerate(class_dirs):
            files += [(p, label) for p in sorted(cdir.rglob("*")) if _is_image(p, folder)]
    else:
        files = [(p, -1) for p in sorted(folder.iterdir()) if _is_image(p, folder)]
    if len(files) < 2:
        seen = sorted({p.suffix.lower() for p in folder.rglob("*") if p.is_file()})[:10]
        raise DataError(f"found {len(files)} images under {str(folder)!r}; expected <class>/<image> files with one "
                        f"of the suffixes {', '.join(IMAGE_SUFFIXES)} (found: {', '.join(seen) or 'no files'})")
    empty = sorted(set(range(len(class_dirs))) - {label for _, label in files})
    if empty:
        names = ", ".join(repr(class_dirs[i].name) for i in empty[:5])
        raise DataError(f"class folder(s) {names} of {str(folder)!r} hold no images (suffixes "
                        f"{', '.join(IMAGE_SUFFIXES)}); every folder under the root is a class: remove them or "
                        "move their images in")  # fmt: skip
    native = common_size([p for p, _ in files])
    image_size = image_size or min(native, MAX_NATIVE_LOAD)
    images, channels_note = read_images([p for p, _ in files], image_size)
    labels = np.array([lab for _, lab in files], dtype=np.int64)
    has_labels = bool(class_dirs)
    return DataSet(
        inputs=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=labels if has_labels else None,
        class_names=[d.name for d in class_dirs],
        name="imagefolder",
        num_classes=len(class_dirs) if has_labels else 10,
        meta={"files": [str(p.relative_to(folder)) for p, _ in files], "native_size": native,
              "channels_note": channels_note},
    )


# ----------------------------------------------------------------------------- torchvision sets


def _torchvision_split(cls, folder: Path, split: str, download: bool, **kw):  # noqa: ANN001
    """Instantiate a torchvision dataset; a missing file becomes a DataError naming the path."""
    try:
        return cls(str(folder), download=download, **kw)
    except RuntimeError as exc:
        hint = "" if download else " (pass --download to fetch it)"
        raise DataError(f"{cls.__name__} not found under {str(folder)!r}{hint}: {exc}") from None


def _stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _load_cifar(root, split, download, hundred: bool) -> DataSet:  # noqa: ANN001
    from torchvision import datasets

    _check_split(split)
    name = "cifar100-20" if hundred else "cifar10"
    folder = require_root(root, name) if not download else Path(root or ".")
    cls = datasets.CIFAR100 if hundred else datasets.CIFAR10
    parts = []
    for train in {"train": [True], "test": [False], "both": [True, False]}[split]:
        ds = _torchvision_split(cls, folder, split, download, train=train)
        parts.append((ds.data, np.asarray(ds.targets)))
    images, labels = _stack(parts)
    if hundred:
        labels = np.asarray(CIFAR100_COARSE)[labels]
        names = list(CIFAR100_SUPERCLASSES)
    else:
        names = list(ds.classes)
    return DataSet(
        inputs=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=labels.astype(np.int64),
        class_names=names,
        name=name,
        num_classes=len(names),
    )


def load_cifar10(root=None, split="both", download=False, **_: object) -> DataSet:  # noqa: ANN001
    return _load_cifar(root, split, download, hundred=False)


def load_cifar100_20(root=None, split="both", download=False, **_: object) -> DataSet:  # noqa: ANN001
    return _load_cifar(root, split, download, hundred=True)


def _load_mnist_like(cls_name: str, name: str, root, split, download) -> DataSet:  # noqa: ANN001
    from torchvision import datasets

    _check_split(split)
    folder = require_root(root, name) if not download else Path(root or ".")
    cls = getattr(datasets, cls_name)
    parts = []
    for train in {"train": [True], "test": [False], "both": [True, False]}[split]:
        ds = _torchvision_split(cls, folder, split, download, train=train)
        parts.append((ds.data.numpy(), ds.targets.numpy()))
    images, labels = _stack(parts)
    return DataSet(
        inputs=torch.from_numpy(images)[:, None].contiguous(),
        labels=labels.astype(np.int64),
        class_names=list(ds.classes),
        name=name,
        num_classes=10,
    )


def load_mnist(root=None, split="both", download=False, **_: object) -> DataSet:  # noqa: ANN001
    return _load_mnist_like("MNIST", "mnist", root, split, download)


def load_fashion_mnist(root=None, split="both", download=False, **_: object) -> DataSet:  # noqa: ANN001
    return _load_mnist_like("FashionMNIST", "fashion-mnist", root, split, download)


def load_stl10(root=None, split="both", download=False, unlabeled: bool = True, **_: object) -> DataSet:  # noqa: ANN001
    """STL-10 train+test (13,000 labelled); the 100,000 unlabelled images feed the instance loss."""
    from torchvision import datasets

    _check_split(split)
    folder = require_root(root, "stl10") if not download else Path(root or ".")
    parts = []
    for s in {"train": ["train"], "test": ["test"], "both": ["train", "test"]}[split]:
        ds = _torchvision_split(datasets.STL10, folder, split, download, split=s)
        parts.append((ds.data, ds.labels))
    images, labels = _stack(parts)
    extra = None
    if unlabeled:
        ds_u = _torchvision_split(datasets.STL10, folder, split, download, split="unlabeled")
        extra = torch.from_numpy(ds_u.data)
    return DataSet(
        inputs=torch.from_numpy(images),
        labels=labels.astype(np.int64),
        class_names=list(ds.classes),
        name="stl10",
        num_classes=10,
        extra_inputs=extra,
    )


def load_svhn(root=None, split="both", download=False, **_: object) -> DataSet:  # noqa: ANN001
    from torchvision import datasets

    _check_split(split)
    folder = require_root(root, "svhn") if not download else Path(root or ".")
    parts = []
    for s in {"train": ["train"], "test": ["test"], "both": ["train", "test"]}[split]:
        ds = _torchvision_split(datasets.SVHN, folder, split, download, split=s)
        parts.append((ds.data, ds.labels))
    images, labels = _stack(parts)
    return DataSet(
        inputs=torch.from_numpy(images),
        labels=labels.astype(np.int64),
        class_names=[str(d) for d in range(10)],
        name="svhn",
        num_classes=10,
    )


register_source(
    DataSourceSpec(
        "digits", load_digits, "scikit-learn's 1,797 8x8 digits (embedded, offline)", False, 10)
)
register_source(
    DataSourceSpec(
        "mnist-test", load_mnist_test, "MNIST test split from its IDX files in --root", True, 10)
)
register_source(
    DataSourceSpec("mnist", load_mnist, "torchvision MNIST (train+test by default)", True, 10)
)
register_source(
    DataSourceSpec("fashion-mnist", load_fashion_mnist, "torchvision Fashion-MNIST", True, 10)
)
register_source(
    DataSourceSpec("cifar10", load_cifar10, "torchvision CIFAR-10 (60,000 32x32 images)", True, 10)
)
register_source(
    DataSourceSpec("cifar100-20", load_cifar100_20, "CIFAR-100 with its 20 superclasses", True, 20)
)
register_source(
    DataSourceSpec(
        "stl10", load_stl10, "torchvision STL-10 (+ unlabeled split for the instance loss)", True, 10)
)
register_source(DataSourceSpec("svhn", load_svhn, "torchvision SVHN", True, 10))
register_source(
    DataSourceSpec("imagefolder", load_imagefolder, "any <root>/<class>/<image> folder", True, None)
)
