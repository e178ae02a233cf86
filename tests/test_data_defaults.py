"""Data-aware defaults: chosen from the data's shape, each overridable, kept in config.json."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clustering.augment import preset
from clustering.config import TrainConfig
from clustering.data import load_dataset
from clustering.data_defaults import (
    COLUMN_CONTRAST_MIN_IMAGES_PER_CLUSTER,
    COLUMN_CONTRAST_MIN_STEPS,
    HEAD_REFIT_BELOW_IMAGES_PER_CLUSTER,
    KMEANS_RESTARTS,
    MIN_STEPS_PER_EPOCH,
    DataProfile,
    choose_batch_size,
    choose_cluster_temperature,
    choose_image_size,
    choose_instance_temperature,
    choose_refit_head,
    choose_strong_view,
)
from clustering.errors import ConfigError
from clustering.setup import resolve_config


def make_folder(root: Path, classes: int, per_class: int, size: int, colour: bool, seed: int = 0,
                mirrored: bool = False) -> Path:
    """An ImageFolder of ``classes`` x ``per_class`` random PNGs of ``size`` px. Grayscale ones are
    brighter on the left, as glyphs are lopsided, so their mirror images are foreign to the set;
    ``mirrored`` mirrors every second image of a class (a turntable's far side)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(255, 0, size)[None, :]  # bright left edge, dark right edge
    for c in range(classes):
        folder = root / f"class{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            if colour:
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            else:
                pixels = (0.6 * ramp + 0.4 * rng.integers(0, 256, (size, size))).astype(np.uint8)
                if mirrored and i % 2:
                    pixels = pixels[:, ::-1]
            Image.fromarray(np.ascontiguousarray(pixels)).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("folders")
    return {
        "gray16": make_folder(base / "gray16", 10, 10, 16, colour=False),
        "colour96": make_folder(base / "colour96", 10, 10, 96, colour=True),
        "faces": make_folder(base / "faces", 40, 10, 32, colour=False),  # 400 images x 40 classes
        "many": make_folder(base / "many", 2, 100, 8, colour=False),  # 100 images per class
        "turntable": make_folder(base / "turntable", 4, 10, 32, colour=False, mirrored=True),
    }


def resolved(root: Path, device: str = "cpu", **fields: object) -> TrainConfig:
    data = load_dataset("imagefolder", root=root, image_size=fields.get("image_size"))  # type: ignore[arg-type]
    return resolve_config(TrainConfig(dataset="imagefolder", root=str(root), **fields), data, device)  # type: ignore[arg-type]


def test_grayscale_16px_keeps_its_size_and_gets_no_flips_or_colour(folders: dict[str, Path]) -> None:
    cfg = resolved(folders["gray16"])
    assert (cfg.image_size, cfg.augment, cfg.backbone) == (16, "digits", "cnn")
    assert cfg.batch_size == 100 // MIN_STEPS_PER_EPOCH  # UCCC's 256 * C / 10 = 256 exceeds N / 4 = 25
    assert set(cfg.data_defaults) == {"image_size", "augment", "backbone", "batch_size", "instance_temperature",
                                      "strong_view", "refit_head", "split_merge", "detach_head_input",
                                      "cc_if_balanced", "kmeans_restarts", "umap_gmm"}  # fmt: skip
    assert "grayscale" in cfg.data_defaults["augment"]["reason"]
    assert "mirror images are foreign" in cfg.data_defaults["augment"]["reason"]


def test_grayscale_whose_mirror_images_belong_to_it_gets_flips_and_no_colour(folders: dict[str, Path]) -> None:
    cfg = resolved(folders["turntable"])
    assert (cfg.image_size, cfg.augment) == (16, "gray-flip")
    assert "mirror images belong to it" in cfg.data_defaults["augment"]["reason"]
    flipping = preset("gray-flip")
    assert flipping.hflip == 0.5 and flipping.jitter == 0.0 and flipping.grayscale == 0.0
    assert dataclasses.replace(flipping, hflip=0.0) == preset("digits")  # the handwriting preset plus flips
    assert resolved(folders["turntable"], augment="digits").augment == "digits"  # a flag wins


def test_colour_96px_is_reduced_on_a_cpu_and_kept_on_a_gpu(folders: dict[str, Path]) -> None:
    cpu = resolved(folders["colour96"])
    assert (cpu.image_size, cpu.augment, cpu.backbone) == (24, "natural", "cnn")
    gpu = resolved(folders["colour96"], device="cuda")
    assert (gpu.image_size, gpu.augment, gpu.backbone) == (96, "natural", "resnet18")
    assert "96 px" in gpu.data_defaults["image_size"]["reason"]


def test_400_images_of_40_classes_get_several_steps_per_epoch(folders: dict[str, Path]) -> None:
    cfg = resolved(folders["faces"])
    assert cfg.num_clusters == 40
    assert cfg.batch_size == 400 // MIN_STEPS_PER_EPOCH  # not the whole data set (256 * 40 / 10 = 1024)
    assert (cfg.image_size, cfg.augment) == (16, "digits")
    assert "grayscale" in cfg.data_defaults["image_size"]["reason"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("image_size", 24), ("augment", "natural"), ("backbone", "resnet18"), ("batch_size", 64), ("refit_head", False)],
)
def test_every_choice_yields_to_a_flag(folders: dict[str, Path], field: str, value: object) -> None:
    cfg = resolved(folders["faces"], **{field: value})
    assert getattr(cfg, field) == value
    assert field not in cfg.data_defaults  # only what was chosen for the user is reported as chosen


def test_uccc_keeps_the_papers_loss_however_many_images_a_cluster_holds(folders: dict[str, Path]) -> None:
    # CC's cluster loss and its balance term (cc_weight 1) split the largest class of data whose
    # classes differ in size (README, "Class sizes"): no rule turns it on, at 10 or 100 images a cluster.
    for name in ("faces", "many"):
        cfg = resolved(folders[name])
        assert cfg.method_params["cc_weight"] == 0.0 and "cc_weight" not in cfg.data_defaults
    kept = resolved(folders["many"], method_params={"cc_weight": 1.0})  # the option stays
    assert kept.method_params["cc_weight"] == 1.0 and "cc_weight" not in kept.data_defaults


def test_uccc_keeps_eq6_out_of_the_backbone_below_100_images_a_cluster(folders: dict[str, Path]) -> None:
    from clustering.data_defaults import choose_detach_head_input
    from clustering.methods import get_method
    from clustering.setup import build_method

    assert choose_detach_head_input(DataProfile("image", 1, 8, 710, 10)).value is True  # 71 a cluster
    assert choose_detach_head_input(DataProfile("image", 1, 28, 10_000, 10)).value is False
    assert choose_detach_head_input(DataProfile("image", 1, 28, 1_000, 10)).value is False  # 100: off
    faces, many = resolved(folders["faces"]), resolved(folders["many"])
    assert faces.method_params["detach_head_input"] is True and "10 images per cluster" in \
        faces.data_defaults["detach_head_input"]["reason"]  # fmt: skip
    assert many.method_params["detach_head_input"] is False
    forced = resolved(folders["faces"], method_params={"detach_head_input": False})
    assert forced.method_params["detach_head_input"] is False and "detach_head_input" not in forced.data_defaults
    # a method built without resolve_config (None) applies the same rule; older runs keep Eq. 6's gradient
    data = load_dataset("imagefolder", str(folders["faces"]), image_size=faces.image_size)
    for asked, built in ((None, True), (False, False)):
        faces.method_params = {**faces.method_params, "detach_head_input": asked}
        assert build_method(faces, data, torch.device("cpu")).model.detach_cluster_input is built
    assert get_method("uccc").Params.VALUE_BEFORE_ADDED["detach_head_input"] is False


@pytest.mark.parametrize("method", ["cc", "sacc"])
def test_cc_and_sacc_keep_their_cluster_loss_out_of_the_backbone_below_100_images_a_cluster(
        folders: dict[str, Path], method: str) -> None:  # fmt: skip
    from clustering.methods import get_method
    from clustering.setup import build_method

    faces, many = resolved(folders["faces"], method=method), resolved(folders["many"], method=method)
    assert faces.method_params["detach_head_input"] is True and "10 images per cluster" in \
        faces.data_defaults["detach_head_input"]["reason"]  # fmt: skip
    assert many.method_params["detach_head_input"] is False and "papers" in \
        many.data_defaults["detach_head_input"]["reason"]  # fmt: skip
    data = load_dataset("imagefolder", str(folders["faces"]), image_size=faces.image_size)
    assert build_method(faces, data, torch.device("cpu")).model.detach_cluster_input is True
    forced = resolved(folders["faces"], method=method, method_params={"detach_head_input": False})
    assert forced.method_params["detach_head_input"] is False and "detach_head_input" not in forced.data_defaults
    assert build_method(forced, data, torch.device("cpu")).model.detach_cluster_input is False
    assert get_method(method).Params.VALUE_BEFORE_ADDED["detach_head_input"] is False  # older runs: the paper's
    gcc = resolved(folders["faces"], method="gcc")  # its graph's cluster loss keeps reaching the backbone
    assert "detach_head_input" not in gcc.method_params and "detach_head_input" not in gcc.data_defaults


def test_uccc_checks_for_balanced_clusters_from_100_images_a_cluster(folders: dict[str, Path]) -> None:
    from clustering.data_defaults import choose_cc_if_balanced
    from clustering.methods import get_method
    from clustering.setup import build_method

    assert choose_cc_if_balanced(DataProfile("image", 1, 8, 710, 10)).value is False  # 71 a cluster
    assert choose_cc_if_balanced(DataProfile("image", 1, 28, 1_000, 10)).value is True  # 100: on
    assert choose_cc_if_balanced(DataProfile("image", 1, 28, 10_000, 10)).value is True
    faces, many = resolved(folders["faces"]), resolved(folders["many"])
    assert faces.method_params["cc_if_balanced"] is False and "Eq. 6 alone" in \
        faces.data_defaults["cc_if_balanced"]["reason"]  # fmt: skip
    assert many.method_params["cc_if_balanced"] is True and "100 images per cluster" in \
        many.data_defaults["cc_if_balanced"]["reason"]  # fmt: skip
    forced = resolved(folders["many"], method_params={"cc_if_balanced": False})
    assert forced.method_params["cc_if_balanced"] is False and "cc_if_balanced" not in forced.data_defaults
    # built without resolve_config (None), the same rule; an explicit cc_weight needs no check
    data = load_dataset("imagefolder", str(folders["many"]), image_size=many.image_size)
    for asked, cc_weight, built in ((None, 0.0, True), (False, 0.0, False), (True, 1.0, False)):
        many.method_params = {**many.method_params, "cc_if_balanced": asked, "cc_weight": cc_weight}
        assert (build_method(many, data, torch.device("cpu")).balance_switch is not None) is built
    assert get_method("uccc").Params.VALUE_BEFORE_ADDED["cc_if_balanced"] is False


#: The parameter that holds each method's instance-contrast temperature.
INSTANCE_TEMPERATURE_FIELD = {"uccc": "instance_temperature", "cc": "instance_temperature",
                              "sacc": "instance_temperature", "gcc": "rgc_temperature"}  # fmt: skip


def test_instance_temperature_narrows_with_the_clusters() -> None:
    def tau(c: int, default: float | None = None) -> float:
        return choose_instance_temperature(DataProfile("image", 1, 16, 100 * c, c), default).value

    assert tau(2) == tau(10) == tau(20) == tau(40) == 0.5  # the papers' 0.5, up to 40 clusters
    assert tau(160) == 0.25 and tau(200) == 0.224  # 0.5 sqrt(40 / C) above
    assert 0.5 > tau(41) > tau(100) > tau(200) > tau(1000) > 0  # and it keeps narrowing
    assert tau(200, 0.5) == 0.224 and tau(40, 0.5) == 0.5  # a method's 0.5 is the papers' value
    assert tau(40, 0.1) == tau(200, 0.1) == tau(1000, 0.1) == 0.1  # a method's lower value stays (GCC on a ResNet)
    assert tau(2000, 0.1) == 0.071  # until the rule's value falls below it


@pytest.mark.parametrize("method", sorted(INSTANCE_TEMPERATURE_FIELD))
def test_every_instance_contrast_takes_the_temperature_rule(method: str, folders: dict[str, Path]) -> None:
    field = INSTANCE_TEMPERATURE_FIELD[method]
    faces = resolved(folders["faces"], method=method)  # 40 classes: the method's own value
    assert faces.method_params[field] == 0.5 and "the method's 0.5" in faces.data_defaults[field]["reason"]
    many = resolve_config(TrainConfig(dataset="digits-pairs200", method=method), load_dataset("digits-pairs200"))
    assert many.method_params[field] == 0.224 and "sqrt(40 / C)" in many.data_defaults[field]["reason"]
    kept = resolve_config(TrainConfig(dataset="digits-pairs200", method=method, method_params={field: 0.5}),
                          load_dataset("digits-pairs200"))  # a flag wins  # fmt: skip
    assert kept.method_params[field] == 0.5 and field not in kept.data_defaults


def test_instance_temperature_rule_keeps_a_lower_backbone_default() -> None:
    """GCC on a ResNet keeps the paper's RGC tau of 0.1 (below the rule's 0.224 at 200 clusters)."""
    pairs = load_dataset("digits-pairs200")
    resnet = resolve_config(TrainConfig(dataset="digits-pairs200", method="gcc", backbone="resnet18"), pairs, "cuda")
    assert resnet.method_params["rgc_temperature"] == 0.1
    assert "already at most" in resnet.data_defaults["rgc_temperature"]["reason"]
    lnscc = resolve_config(TrainConfig(dataset="digits-pairs200", method="lnscc"), pairs)  # no instance contrast
    assert not {"instance_temperature", "rgc_temperature"} & set(lnscc.data_defaults)


def test_uccc_strong_view_up_to_40_clusters(folders: dict[str, Path]) -> None:
    def strong(c: int) -> bool:
        return choose_strong_view(DataProfile("image", 1, 16, 100 * c, c)).value

    assert strong(2) and strong(10) and strong(20) and strong(40)  # SACC's RandAugment view as the third
    assert not strong(41) and not strong(100) and not strong(200)  # the paper's two weak views
    faces = resolved(folders["faces"])  # 40 classes
    assert faces.method_params["strong_view"] is True and "<= 40" in faces.data_defaults["strong_view"]["reason"]
    many = resolve_config(TrainConfig(dataset="digits-pairs100"), load_dataset("digits-pairs100"))
    assert many.method_params["strong_view"] is False
    assert "two weak views" in many.data_defaults["strong_view"]["reason"]
    kept = resolve_config(TrainConfig(dataset="digits-pairs100", method_params={"strong_view": True}),
                          load_dataset("digits-pairs100"))  # a flag wins  # fmt: skip
    assert kept.method_params["strong_view"] is True and "strong_view" not in kept.data_defaults
    assert "strong_view" not in resolved(folders["faces"], method="sacc").data_defaults  # SACC always has it


def test_uccc_strong_view_off_on_a_densely_sampled_set(tmp_path: Path) -> None:
    def strong(ratio: float | None, c: int = 20) -> bool:
        return choose_strong_view(DataProfile("image", 1, 16, 72 * c, c, neighbor_ratio=ratio)).value

    assert not strong(0.128) and not strong(0.19)  # the suite's turntable: neighbours 0.13 of the way
    assert strong(0.2) and strong(0.297) and strong(None)  # digits 0.297; vectors have no ratio
    assert not strong(0.5, c=100) and not strong(0.1, c=100)  # above 40 clusters off whatever the ratio
    # A folder of 20 objects, each 30 poses a small step apart (a blend from one picture to another).
    rng = np.random.default_rng(0)
    for c in range(20):
        start, end = rng.integers(0, 256, (2, 32, 32)).astype(float)
        (tmp_path / f"object{c:02d}").mkdir()
        for i, t in enumerate(np.linspace(0, 1, 30)):
            Image.fromarray(((1 - t) * start + t * end).astype(np.uint8)).save(tmp_path / f"object{c:02d}" / f"{i}.png")
    dense = resolved(tmp_path)
    assert dense.method_params["strong_view"] is False
    assert "nearest neighbour lies at 0.0" in dense.data_defaults["strong_view"]["reason"]
    assert resolved(tmp_path, method_params={"strong_view": True}).method_params["strong_view"] is True  # a flag wins


def test_sacc_cluster_contrast_temperature_sharpens_with_the_clusters(folders: dict[str, Path]) -> None:
    def tau(c: int) -> float:
        return choose_cluster_temperature(DataProfile("image", 1, 16, 100 * c, c)).value

    assert tau(2) == tau(10) == 1.0  # CC's paper value, set on 10 clusters
    assert 1.0 > tau(11) > tau(20) > tau(40) > tau(100) > tau(200) > tau(1000) > 0
    for c in (20, 40, 100, 200):  # a duplicate column keeps its 10-cluster share of the denominator
        assert math.exp(1 / tau(c)) / (2 * c - 2) == pytest.approx(math.e / 18, rel=0.01)
    faces = resolved(folders["faces"], method="sacc")  # 40 classes
    assert faces.method_params["cluster_temperature"] == tau(40)
    assert "ln((C - 1) / 9)" in faces.data_defaults["cluster_temperature"]["reason"]
    ten = resolved(folders["gray16"], method="sacc")  # 10 classes
    assert ten.method_params["cluster_temperature"] == 1.0
    assert "the paper's" in ten.data_defaults["cluster_temperature"]["reason"]
    kept = resolved(folders["faces"], method="sacc", method_params={"cluster_temperature": 1.0})  # a flag wins
    assert kept.method_params["cluster_temperature"] == 1.0 and "cluster_temperature" not in kept.data_defaults
    cc = resolved(folders["faces"], method="cc")  # CC keeps its paper's 1.0 (it lost at 40 classes, README)
    assert "cluster_temperature" not in cc.data_defaults and cc.method_params["cluster_temperature"] == 1.0
    uccc = resolved(folders["faces"])  # UCCC's own cluster temperature (Eq. 6's cosine variant) is not this rule
    assert "cluster_temperature" not in uccc.data_defaults and uccc.method_params["cluster_temperature"] == 0.3


def test_head_refit_rule_over_images_per_cluster(folders: dict[str, Path]) -> None:
    def refit(n: int, c: int) -> bool:
        return choose_refit_head(DataProfile("image", 1, 28, n, c)).value

    at = HEAD_REFIT_BELOW_IMAGES_PER_CLUSTER
    assert refit(10 * at - 1, 10) and not refit(10 * at, 10)  # the boundary: from 100 a cluster, the head as trained
    assert not any((refit(1797, 10), refit(10_000, 10), refit(3594, 20), refit(9298, 10)))  # digits, MNIST, USPS
    assert all((refit(1440, 20), refit(400, 40), refit(2000, 100), refit(4000, 200)))  # turntable, faces, 100, 200
    assert resolved(folders["faces"]).refit_head is True
    assert resolved(folders["many"]).refit_head is False and "100 images per cluster" in \
        resolved(folders["many"]).data_defaults["refit_head"]["reason"]
    # any method with the softmax head; for a head trained under a uniform prior at any images per cluster
    assert resolved(folders["faces"], method="sacc", umap_gmm=False).refit_head is True
    for method in ("cc", "sacc", "gcc"):
        prior = resolved(folders["many"], method=method, umap_gmm=False)
        assert prior.refit_head is True and "uniform prior" in prior.data_defaults["refit_head"]["reason"]
    assert choose_refit_head(DataProfile("image", 1, 28, 10_000, 10), uniform_prior=True).value is True
    lnscc = resolved(folders["faces"], method="lnscc")  # its Student-t head: nothing to refit
    assert lnscc.refit_head is False and "refit_head" not in lnscc.data_defaults
    with pytest.raises(ConfigError, match="refit_head rewrites the two-layer softmax cluster head; 'lnscc'.*uccc"):
        resolved(folders["faces"], method="lnscc", refit_head=True)


def test_image_size_rule_over_native_sizes() -> None:
    def size(native: int, device: str = "cpu", channels: int = 3) -> int:
        return choose_image_size(DataProfile("image", channels, native, 1000, 10), device).value

    natives = (8, 16, 20, 28, 32, 64, 128)
    assert [size(n) for n in natives] == [16, 16, 20, 20, 20, 24, 24]  # colour: halved into 20-24 px
    assert [size(n, channels=1) for n in natives] == [16] * 7  # grayscale: 16 px whatever its size
    assert [size(n, "cuda", channels) for n in (8, 32, 64, 128) for channels in (1, 3)] == [32, 32, 32, 32, 64,
                                                                                            64, 96, 96]  # fmt: skip
    # An MLP on flattened pixels (LNSCC) takes them at their native size on any device.
    assert [choose_image_size(DataProfile("image", 1, n, 1000, 10), "cpu", "mlp").value for n in (8, 28, 64)] == [
        8, 28, 64]  # fmt: skip


def test_unknown_augmentation_and_backbone_list_the_valid_ones(folders: dict[str, Path]) -> None:
    from clustering.errors import ConfigError

    with pytest.raises(ConfigError, match="valid: digits, gray-flip, natural, natural-large, none"):
        resolved(folders["gray16"], augment="foo")
    with pytest.raises(ConfigError, match="valid: cnn, mlp, resnet18, resnet34"):
        resolved(folders["gray16"], backbone="foo")


def test_the_cli_prints_the_choices_and_config_json_keeps_them(
    folders: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clustering.cli import main

    code = main(["train", "--dataset", "imagefolder", "--root", str(folders["gray16"]), "--max-steps", "1",
                 "--out", str(tmp_path), "--run-id", "r", "--no-progress", "--batch-size", "8",
                 "--projections", "none"])  # fmt: skip
    assert code == 0
    err = capsys.readouterr().err
    assert "default image_size = 16: grayscale at its native 16 px" in err and "default augment = digits" in err
    assert "batch_size" not in err  # given as a flag
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["data_defaults"]["image_size"]["value"] == 16 and config["batch_size"] == 8


def test_imagefolder_without_a_size_loads_at_its_native_size(folders: dict[str, Path]) -> None:
    data = load_dataset("imagefolder", root=folders["colour96"])
    assert data.inputs.shape[1:] == (3, 96, 96) and data.meta["native_size"] == 96


def test_cpu_batch_stays_at_256_however_many_clusters() -> None:
    from clustering.data_defaults import CPU_BATCH, choose_batch_size

    def batch(clusters: int, device: str) -> int:
        profile = DataProfile("image", 1, 16, 100_000, clusters)
        return choose_batch_size(profile, 256 * clusters // 10, device).value

    # On a CPU a time budget buys steps: 256 at 200 clusters, not the 1,600 of 8 images a cluster
    # (the rule before), nor the paper's GPU batch.
    assert [batch(c, "cpu") for c in (10, 20, 40, 200)] == [CPU_BATCH] * 4 == [256] * 4
    assert [batch(c, "cuda") for c in (10, 20, 40, 200)] == [256, 512, 1024, 5120]  # the paper's 256 * C / 10
    assert choose_batch_size(DataProfile("image", 1, 16, 100_000, 10), 128, "cpu").value == 128  # never raised
    small = DataProfile("image", 1, 16, 400, 40)  # the N / 4 cap still applies on top
    assert choose_batch_size(small, 1024, "cpu").value == 100


def test_column_contrast_methods_keep_five_images_per_cluster_in_a_batch(folders: dict[str, Path]) -> None:
    # 400 images of 40 classes: N / 4 = 100 leaves 2.5 images per cluster in a batch; CC, SACC and
    # GCC contrast the clusters' columns over the batch, so they get 200 (2 steps an epoch); UCCC
    # (Eq. 6 compares rows, not columns) keeps 100.
    for method in ("cc", "sacc", "gcc"):
        cfg = resolved(folders["faces"], method=method)
        assert cfg.batch_size == COLUMN_CONTRAST_MIN_IMAGES_PER_CLUSTER * 40 == 400 // COLUMN_CONTRAST_MIN_STEPS
        assert "cluster-level contrast" in cfg.data_defaults["batch_size"]["reason"]
        assert resolved(folders["faces"], method=method, batch_size=64).batch_size == 64  # a flag wins
    assert resolved(folders["faces"], method="uccc").batch_size == 100
    many = folders["many"]  # 200 images of 2 classes: 25 a cluster in a batch of 50 already
    assert resolved(many, method="cc").batch_size == resolved(many, method="uccc").batch_size


def test_column_contrast_floor_over_clusters_and_sizes() -> None:
    def batch(n: int, clusters: int, world: int = 1) -> int:
        profile = DataProfile("image", 1, 16, n, clusters)
        return choose_batch_size(profile, 256, "cpu", world, column_contrast=True).value

    assert batch(10_000, 10) == 256  # already 25 images per cluster: unchanged
    assert batch(400, 40) == 200  # 5 per cluster, 2 steps an epoch
    assert batch(4_000, 200) == 1_000  # 5 per cluster, 4 steps
    assert batch(100, 40) == 50  # never fewer than 2 steps an epoch, even below 5 per cluster
    assert batch(402, 40, world=4) == 200  # divisible over the processes


def test_umap_gmm_rule_by_method_and_size(folders: dict[str, Path], tmp_path: Path) -> None:
    for method in ("cc", "sacc", "gcc"):  # a head under a uniform prior: UMAP + GMM, in place of the k-means moves
        cfg = resolved(folders["faces"], method=method)
        assert cfg.umap_gmm is True and "uniform prior" in cfg.data_defaults["umap_gmm"]["reason"]
        assert (cfg.refit_head, cfg.split_merge, cfg.kmeans_restarts) == (False, False, 0)
        assert all("UMAP + GMM" in cfg.data_defaults[n]["reason"] for n in ("refit_head", "split_merge",
                                                                           "kmeans_restarts"))  # fmt: skip
    uccc = resolved(folders["faces"])  # only if its head comes out uneven; an even head keeps its own end
    assert uccc.umap_gmm == "if_uneven" and "come out uneven" in uccc.data_defaults["umap_gmm"]["reason"]
    assert uccc.refit_head is True and uccc.split_merge is True
    cc_if_uneven = resolved(folders["faces"], method="cc", umap_gmm="if_uneven")  # any method can ask for it
    assert cc_if_uneven.kmeans_restarts == KMEANS_RESTARTS and cc_if_uneven.refit_head is True
    with pytest.raises(ConfigError, match="unknown umap_gmm setting 'yes'; valid: True, False, if_uneven"):
        resolved(folders["faces"], umap_gmm="yes")
    off = resolved(folders["faces"], method="cc", umap_gmm=False)  # a flag wins, and the k-means moves come back
    assert "umap_gmm" not in off.data_defaults and off.kmeans_restarts == KMEANS_RESTARTS and off.refit_head is True
    asked = resolved(folders["faces"], umap_gmm=True)  # UCCC can ask for it
    assert asked.umap_gmm is True and asked.refit_head is False and "umap_gmm" not in asked.data_defaults
    tiny = make_folder(tmp_path / "tiny", 2, 9, 16, colour=False)  # 18 images: too few for a neighbour graph
    small = resolved(tiny, method="cc")
    assert small.umap_gmm is False and "18 images for 2 clusters" in small.data_defaults["umap_gmm"]["reason"]
    assert resolved(tiny).umap_gmm is False  # UCCC's if_uneven too
    assert small.kmeans_restarts == KMEANS_RESTARTS  # the k-means end of a run instead
    with pytest.raises(ConfigError, match="umap_gmm: 18 images for 2 clusters.*run without --umap-gmm"):
        resolved(tiny, method="cc", umap_gmm=True)
    with pytest.raises(ConfigError, match="umap_gmm rewrites the two-layer softmax cluster head; 'lnscc'"):
        resolved(folders["faces"], method="lnscc", umap_gmm=True)
    assert resolved(folders["faces"], method="lnscc").umap_gmm is False
