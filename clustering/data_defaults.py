"""Training defaults chosen from the data's shape: image size, augmentation, backbone, batch size.

A researcher's own folder must give a sensible run with no flags, so nothing here is tuned to one
data set: every choice is a rule on what the data looks like (channels, native size, N, C, whether
its mirror images belong to it) and on the machine that trains it, and comes with the reason it was
made. ``resolve_config`` applies a choice only where the user left the field unset; ``config.json``
keeps the choices and reasons.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from clustering.data import DataSet
from clustering.data.closeness import DENSE_NEIGHBOR_RATIO, neighbor_ratio
from clustering.data.mirror import MIRROR_SHARE_FOR_FLIPS, mirror_share
from clustering.umap_gmm import IF_UNEVEN as UMAP_GMM_IF_UNEVEN
from clustering.umap_gmm import too_small as umap_gmm_too_small

#: The small CNN's working range on a CPU. Its cost grows with the pixel count (README, speed): its
#: first stage runs at the input resolution, so 32 px costs 1.8x a step at 24 px and 2.6x one at
#: 20 px, and a 5-minute budget buys too few steps at 32 px (digits at 64 px, halved to 32: 21
#: epochs, ACC 0.66-0.69, below k-means' 0.80). Colour images are halved into 20-24 px, where
#: texture and colour survive.
CPU_MIN_SIZE, CPU_MAX_SIZE = 16, 24
#: Grayscale images go to 16 px on a CPU whatever their native size: shape is what carries the
#: classes there, and at 16 px UCCC, SACC and CC held or gained over 20-24 px on every grayscale
#: set measured, not only through the extra epochs (README, "Image size on a CPU": CC on digits
#: at 64 px 0.895 at 16 px against 0.707 at 24, on 1,000 MNIST images 0.721 against 0.587 with
#: hundreds of epochs either way; GCC mixed within its wide seed spread).
CPU_GRAYSCALE_SIZE = 16
#: ResNet18 with the CIFAR stem on a GPU: the papers' 32-96 px range.
GPU_MIN_SIZE, GPU_MAX_SIZE = 32, 96
#: An epoch should hold at least this many optimiser steps: with the whole data set as one batch
#: (N smaller than the papers' 256 * C / 10) a run gets one step per epoch and a batch norm that
#: sees the same images every time.
MIN_STEPS_PER_EPOCH = 4
#: On a CPU a time budget buys steps, and a step's cost grows with the batch: the papers' GPU batch
#: of 256 * C / 10 (512 at 20 clusters) halves the steps: ACC 0.65 with 16 of 20 clusters after 5
#: minutes, against 0.88 with all 20 at 256 (README, the ablation over C). Many clusters do not
#: raise it either: it used to grow to 8 images per cluster (1,000 at 200 classes of 20 images,
#: 4 steps an epoch), and 256 (16 steps) lifted UCCC there from 0.358 / 0.368 / 0.385 to 0.522 /
#: 0.436 / 0.507 in 5 minutes, at 100 classes (500 before) to 0.750 / 0.724 / 0.684 from
#: 0.601-0.740. UCCC's neighbour view, not the batch, gives an image a partner of its class where
#: a batch holds one or two of each (README, "UCCC's batch at 100 and 200 classes").
CPU_BATCH = 256
#: CC's and SACC's cluster-level contrast (and GCC's AGC) treats each cluster's column of
#: probabilities over the batch as one sample; with N / 4 = 100 images in a batch of 40 clusters
#: (2.5 images a cluster) those columns are mostly noise. For these methods the batch is raised towards this many images
#: per cluster, down to COLUMN_CONTRAST_MIN_STEPS steps an epoch. On 400 images of 40 classes a
#: batch of 200 against 100: SACC 0.710 / 0.748 against 0.615 (two-digit numbers), 0.963 / 0.983
#: against 0.917 (subjects); CC 0.632 / 0.588 against 0.562 / 0.565, level on the subjects; GCC
#: 0.735 / 0.792 against 0.682 / 0.708 and 0.790 / 0.762 against 0.755 / 0.738; 400 (one step an
#: epoch) lost (CC 0.520). README, "Today's default on the whole suite".
COLUMN_CONTRAST_MIN_IMAGES_PER_CLUSTER = 5
COLUMN_CONTRAST_MIN_STEPS = 2
#: The instance contrast's temperature (UCCC's, CC's and SACC's NT-Xent, GCC's RGC): at most
#: 0.5 sqrt(40 / C) above INSTANCE_TEMPERATURE_FULL_UP_TO clusters (0.316 at 100, 0.224 at 200),
#: the papers' 0.5 up to there, and a method's own value where it is lower (GCC's 0.1 on a ResNet).
#: A lower temperature weighs the nearest negatives more (Wang & Liu, CVPR 2021), and with many
#: classes the nearest negatives are images of other classes close by: at 0.5 every method left 200
#: classes of 20 images mixed in z (k-means on z 0.16-0.23, below the pixels' 0.47). First measured
#: on UCCC, where the positive graph's band 1 - 2t / C narrows as sqrt(2t / C): at 0.2 k-means on z
#: 0.58, at 40 classes a lower value gained nothing (0.2 cost 0.03-0.05). Then on the others at 200
#: classes (seed 0, refitted head): SACC 0.155 -> 0.366, CC 0.209 -> 0.332, GCC 0.237 -> 0.577; at
#: 100 classes GCC 0.696 -> 0.802, SACC and CC level; on 100 photographic subjects (objects-ids100,
#: two seeds) UCCC 0.753 -> 0.879, the others within the seed spread (SACC -0.018, GCC +0.025, CC
#: +0.038). README, "UCCC at 10 to 200 clusters" and "The instance temperature at 100 and 200
#: clusters, every method".
PAPER_INSTANCE_TEMPERATURE = 0.5
INSTANCE_TEMPERATURE_FULL_UP_TO = 40
#: UCCC's strong (RandAugment) third view up to this many clusters; above, the paper's two weak
#: views. Up to 40 classes the strong view was ahead in 5-minute CPU runs although a step costs
#: 1.5x (MNIST-test +0.048, digits-rot20 +0.022, 40 two-digit classes +0.06); at 100 classes it was
#: level or behind (0.593 / 0.595 with it, 0.599 / 0.660 without) and at 200 behind (0.142 / 0.196
#: against 0.265 / 0.273), where 5 minutes buy 35 epochs with it and 60 without. README, "UCCC at
#: 10 to 200 clusters".
STRONG_VIEW_UP_TO = 40
#: SACC sums three of CC's cluster-level NT-Xent losses; each contrasts a cluster's column of
#: probabilities over the batch with 2C - 2 other columns, at CC's tau_C = 1.0 (the papers keep it
#: on every data set, from 10 to 200 clusters). The columns are non-negative, so their cosines lie
#: in [0, 1], and a negative column as close as the positive (two clusters sharing a class) weighs
#: only e^(1 / tau) times an unrelated one in the softmax's denominator: against 18 unrelated ones
#: at 10 clusters but 198 at 100, so the push that separates such a pair thins out as C grows.
#: ``cluster_contrast_temperature`` keeps its share at the 10-cluster value,
#: e^(1 / tau) / (2C - 2) = e / 18. SACC at 100 classes of 20 images: 0.523-0.543 over four runs
#: against 0.456 at 1.0 (its embedding alone gave 0.65 by k-means: the head lagged, not the
#: representation); 0.757 / 0.820 against 0.710 / 0.748 at 40 two-digit classes; level within the
#: seed spread on the other 20- and 40-class sets. CC's single loss lost at 40 classes with
#: it (0.555 and 0.50 against 0.632 / 0.588) and gained little at 100, so CC keeps 1.0. README,
#: "SACC's cluster contrast at many clusters".
CC_CLUSTER_TEMPERATURE = 1.0
CLUSTER_TEMPERATURE_REFERENCE_CLUSTERS = 10
#: The end-of-run head refit (``clustering.head_refit``: the head's partition re-centred in the
#: backbone features by spherical k-means) below this many images per cluster. There a cluster gets
#: one or two images a batch and the head lags the features it reads: on the suite's checkpoints at
#: 10-72 images a cluster the refit gained on UCCC, CC, SACC (200 classes of 20: 0.436-0.588 to
#: 0.58-0.72; CC at 100 classes 0.443 to 0.614); at 180-1,000 a cluster the head was level with it
#: or ahead (digits 0.987 against 0.979). README, "The head refit". For CC, SACC and GCC (a head
#: under a uniform prior on cluster sizes) it is on at any size: there it gained from 180 a cluster
#: up too (GCC on digits 0.903 -> 0.970, CC 0.896 -> 0.921, GCC on MNIST at USPS's class sizes 0.713
#: -> 0.805; README, "k-means restarts for the methods with a uniform prior").
HEAD_REFIT_BELOW_IMAGES_PER_CLUSTER = 100
#: UCCC's, CC's and SACC's cluster head reads the features without gradient below this many images
#: per cluster, where the cluster loss's gradient shaped h after the head's evened partition; from
#: 100 up the two were level (README, "Eq. 6 out of the backbone", and for CC and SACC, whose end of
#: a run reads h, "CC and SACC: the cluster loss out of the backbone": 200 classes SACC 0.43 -> 0.62).
DETACH_HEAD_INPUT_BELOW_IMAGES_PER_CLUSTER = 100
#: UCCC adds CC's cluster loss during a run where the head's clusters look balanced
#: (``cc_if_balanced``) from this many images per cluster: above it CC's loss freed the minority
#: styles Eq. 6 leaves (digits 0.990-0.994 against 0.96), below it it cost 0.04-0.17 on balanced sets
#: too (README, "The absorbed minority styles").
CC_IF_BALANCED_FROM_IMAGES_PER_CLUSTER = 100
#: k-means++ starts of the end-of-run restarts (``clustering.kmeans_restarts``) for the methods whose
#: head trains under a uniform prior on cluster sizes. Ten cost seconds on the suite's sets (a
#: 10-class run of 5,854 images: 25 s on one CPU thread, embedding included).
KMEANS_RESTARTS = 10


@dataclass(frozen=True)
class DataProfile:
    """What the defaults depend on."""

    kind: str  # "image" or "vector"
    channels: int | None
    native_size: int | None  # the shorter side of the images as loaded
    num_samples: int
    num_classes: int
    channels_note: str | None = None  # how the channels were decided, where the files' modes did not say
    mirror_share: float | None = None  # clustering.data.mirror: do the images' mirror images belong to the set?
    neighbor_ratio: float | None = None  # clustering.data.closeness: how near an image's nearest neighbour is

    @classmethod
    def of(cls, data: DataSet, num_clusters: int | None = None) -> DataProfile:
        mirror = closeness = None
        channels = size = None
        if data.kind == "image":
            channels = int(data.inputs.shape[1])
            size = int(data.meta.get("native_size") or min(data.inputs.shape[-2:]))
            if len(data) >= 2:
                mirror = round(mirror_share(data.inputs), 3) if channels == 1 else None
                closeness = round(neighbor_ratio(data.inputs), 3)
        return cls(data.kind, channels, size, len(data), int(num_clusters or data.num_classes),
                   data.meta.get("channels_note"), mirror, closeness)


@dataclass(frozen=True)
class Choice:
    value: Any
    reason: str


def choose_image_size(profile: DataProfile, device_type: str, backbone: str = "cnn") -> Choice:
    size = profile.native_size
    assert size is not None
    if backbone == "mlp":
        # The rules below are about a conv net's cost per pixel; an MLP on flattened pixels (LNSCC)
        # takes them as the papers do, and its graph is built on them.
        return Choice(size, f"MLP on the flattened pixels: native {size} px kept, as the papers do")
    if device_type == "cuda":
        chosen = min(max(size, GPU_MIN_SIZE), GPU_MAX_SIZE)
        return Choice(chosen, f"GPU: ResNet18 input, native {size} px kept within {GPU_MIN_SIZE}-{GPU_MAX_SIZE} px")
    if size < CPU_MIN_SIZE:
        return Choice(CPU_MIN_SIZE, f"native {size} px is below the small CNN's {CPU_MIN_SIZE} px minimum (two "
                                    "pooling stages); upsampled")  # fmt: skip
    if profile.channels == 1:
        if size == CPU_GRAYSCALE_SIZE:
            return Choice(size, f"grayscale at its native {size} px")
        return Choice(CPU_GRAYSCALE_SIZE, f"CPU, grayscale: native {size} px resized to {CPU_GRAYSCALE_SIZE} px (shape "
                                          "carries the classes; more epochs per minute, and the methods "
                                          "measured held or gained there)")  # fmt: skip
    if size <= 20:
        return Choice(size, f"native {size} px, small enough for a CPU")
    chosen = min(max(4 * round(size / 8), 20), CPU_MAX_SIZE)  # half the native size, a multiple of 4
    return Choice(chosen, f"CPU: native {size} px halved into {20}-{CPU_MAX_SIZE} px (the step time grows with the "
                          "pixels; more epochs per minute)")  # fmt: skip


def choose_augment(profile: DataProfile) -> Choice:
    if profile.channels == 1:
        gray = f"grayscale ({profile.channels_note})" if profile.channels_note else "grayscale"
        share, bar = profile.mirror_share, MIRROR_SHARE_FOR_FLIPS
        if share is not None and share >= bar:
            return Choice("gray-flip", f"{gray}, and its mirror images belong to it ({share:.0%} of mirrored images "
                                       f"lie as close to another image as the image itself; >= {bar:.0%}): crops, "
                                       "small rotations and shifts, noise, cutout and horizontal flips; no colour "
                                       "operations (preset 'gray-flip')")  # fmt: skip
        mirrored = "" if share is None else f", whose mirror images are foreign to it ({share:.0%} < {bar:.0%})"
        return Choice("digits", f"{gray}{mirrored}: crops, small rotations and shifts, noise and cutout; no flips or "
                                "colour operations (preset 'digits')")  # fmt: skip
    return Choice("natural", f"{profile.channels} channels: SimCLR crops, flips and colour jitter (preset "
                             "'natural'; blur from 64 px)")  # fmt: skip


def choose_backbone(profile: DataProfile, device_type: str) -> Choice:
    if profile.kind == "vector":
        return Choice("mlp", "feature vectors: MLP encoder")
    if device_type == "cuda":
        return Choice("resnet18", "GPU: the papers' ResNet18 (CIFAR stem)")
    return Choice("cnn", "CPU: the small 6-conv CNN (a ResNet18 step is ~20x slower here)")


def choose_batch_size(profile: DataProfile, method_batch: int, device_type: str = "cpu",
                      world_size: int = 1, column_contrast: bool = False) -> Choice:  # fmt: skip
    """The method's batch (e.g. the papers' 256 * C / 10), on a CPU at most CPU_BATCH, and capped
    so an epoch has several steps.
    ``column_contrast`` (a cluster-level contrast over the batch's columns: CC's, SACC's, GCC's): then
    raised towards COLUMN_CONTRAST_MIN_IMAGES_PER_CLUSTER images per cluster where the cap left fewer."""
    choice = _steps_capped_batch(profile, method_batch, device_type, world_size)
    wanted = COLUMN_CONTRAST_MIN_IMAGES_PER_CLUSTER * profile.num_classes
    if not column_contrast or choice.value >= wanted:
        return choice
    floor = min(wanted, profile.num_samples // COLUMN_CONTRAST_MIN_STEPS)
    floor -= floor % world_size
    if floor <= choice.value:
        return choice
    per_cluster = floor / profile.num_classes
    return Choice(floor, f"{choice.value} raised to {floor} ({per_cluster:g} images per cluster in a batch, "
                         f"{profile.num_samples // floor} steps an epoch): the cluster-level contrast compares "
                         "each cluster's column over the batch")  # fmt: skip


def _steps_capped_batch(profile: DataProfile, method_batch: int, device_type: str, world_size: int) -> Choice:
    batch, reason = method_batch, f"the method's default ({method_batch})"
    if device_type != "cuda" and batch > CPU_BATCH:
        batch = CPU_BATCH
        reason = f"CPU: the method's {method_batch} lowered to {batch} (a time budget buys more steps)"
    cap = max(2 * world_size, profile.num_samples // MIN_STEPS_PER_EPOCH)
    if batch <= cap:
        return Choice(batch, reason)
    cap -= cap % world_size
    return Choice(cap, f"the method's {method_batch} capped at N / {MIN_STEPS_PER_EPOCH} = {cap} so an epoch of "
                       f"{profile.num_samples} samples has {MIN_STEPS_PER_EPOCH} steps")  # fmt: skip


def by_images_per_cluster(profile: DataProfile, bar: int, on_below: bool, on: str, off: str) -> Choice:
    """A switch set by the images per cluster N / C against ``bar``: on below it (``on_below``) or
    from it up, with ``on`` or ``off`` as the reason after the count and the comparison."""
    per_cluster = profile.num_samples / profile.num_classes
    below = per_cluster < bar
    value = below if on_below else not below
    return Choice(value, f"{per_cluster:.0f} images per cluster ({'<' if below else '>='} {bar}): "
                         f"{on if value else off}")  # fmt: skip


def choose_refit_head(profile: DataProfile, uniform_prior: bool = False) -> Choice:
    """``refit_head`` (any method with the softmax head): on where clusters hold few images, and at any
    size for a method whose head trains under a uniform prior on cluster sizes."""
    if uniform_prior:
        return Choice(True, "when the run finishes, the head's clusters are re-centred in the backbone features "
                            "(spherical k-means from its partition): a head trained under a uniform prior on "
                            "cluster sizes evens them, its features less so")  # fmt: skip
    return by_images_per_cluster(
        profile, HEAD_REFIT_BELOW_IMAGES_PER_CLUSTER, on_below=True,
        on="when the run finishes, the head's clusters are re-centred in the backbone features (spherical "
           "k-means from its partition); a head seeing one or two images of a cluster a batch lags them",
        off="the head as trained (it is level with or ahead of k-means on its features there)")  # fmt: skip


def choose_kmeans_restarts(profile: DataProfile, uniform_prior: bool) -> Choice:
    """``kmeans_restarts`` (any method with the softmax head): on where the method's head trains under
    a uniform prior on cluster sizes (``ClusterMethod.uniform_prior``), whatever the data."""
    if not uniform_prior:
        return Choice(0, "the head's loss has no prior on cluster sizes (restarts with a higher k-means objective "
                         "than a UCCC head's partition were often worse)")  # fmt: skip
    return Choice(KMEANS_RESTARTS, f"the head trains under a uniform prior on cluster sizes, which evens unequal "
                                   f"classes: when the run finishes, k-means in the backbone features from "
                                   f"{KMEANS_RESTARTS} k-means++ starts replaces its partition where the k-means "
                                   f"objective is higher")  # fmt: skip


def choose_umap_gmm(profile: DataProfile, uniform_prior: bool) -> Choice:
    """``umap_gmm`` (any method with the softmax head), where the set is large enough for a neighbour
    graph: on where the head trains under a uniform prior on cluster sizes, else IF_UNEVEN."""
    if (why_not := umap_gmm_too_small(profile.num_samples, profile.num_classes)) is not None:
        return Choice(False, why_not)
    if not uniform_prior:
        return Choice(UMAP_GMM_IF_UNEVEN, "where the head's clusters come out uneven when the run finishes (the "
                      "classes differ in size, or it cut or pooled classes), a Gaussian mixture on a UMAP embedding "
                      "of the backbone features replaces its partition; an even head stays, as trained or refitted")
    return Choice(True, "the head trains under a uniform prior on cluster sizes, which evens unequal classes and "
                        "the features with them: when the run finishes, a Gaussian mixture on a UMAP embedding of "
                        "the backbone features (a neighbour graph, blind to a class's spread) replaces "
                        "its partition, in place of the refit, k-means restarts and moves")  # fmt: skip


def replaced_by_umap_gmm() -> dict[str, Choice]:
    """The refit, restarts and moves where UMAP + GMM gives the partition: each would pull it back
    toward the k-means objective in the features, which prefers the evened clusters."""
    why = ("off: UMAP + GMM gives the end-of-run partition (the k-means objective would pull it back toward "
           "evened clusters)")
    return {"refit_head": Choice(False, why), "split_merge": Choice(False, why), "kmeans_restarts": Choice(0, why)}


def choose_split_merge(profile: DataProfile) -> Choice:
    """``split_merge`` (any method with the softmax head): on wherever a move exists (3+ clusters)."""
    if profile.num_classes < 3:
        return Choice(False, f"{profile.num_classes} clusters: a move needs one to split and two others to merge")
    return Choice(True, "when the run finishes, a class split over two clusters is rejoined and two classes "
                        "sharing one are parted where that raises the k-means objective in the backbone "
                        "features (no term on cluster sizes)")  # fmt: skip


def instance_contrast_temperature(num_clusters: int, default: float | None = None) -> float:
    """The method's ``default`` (None: the papers' 0.5), but at most 0.5 sqrt(40 / C) above 40
    clusters, to three decimals (see PAPER_INSTANCE_TEMPERATURE)."""
    scale = math.sqrt(min(1.0, INSTANCE_TEMPERATURE_FULL_UP_TO / num_clusters))
    cap = round(PAPER_INSTANCE_TEMPERATURE * scale, 3)
    return cap if default is None else min(default, cap)


def uccc_strong_view(num_clusters: int) -> bool:
    """The strong third view up to STRONG_VIEW_UP_TO clusters."""
    return num_clusters <= STRONG_VIEW_UP_TO


def detach_head_input_for(images_per_cluster: float) -> bool:
    """The cluster head without gradient into the backbone below the bar of images per cluster."""
    return images_per_cluster < DETACH_HEAD_INPUT_BELOW_IMAGES_PER_CLUSTER


def choose_detach_head_input(profile: DataProfile, default: Any = None) -> Choice:
    """``detach_head_input`` (UCCC, CC, SACC) from the images per cluster (``detach_head_input_for``)."""
    return by_images_per_cluster(
        profile, DETACH_HEAD_INPUT_BELOW_IMAGES_PER_CLUSTER, on_below=True,
        on="the cluster loss trains the cluster head only, the backbone learns from the instance loss (the "
           "cluster loss's gradient evened the classes in the features there)",
        off="the cluster loss's gradient reaches the backbone, as in the papers")  # fmt: skip


def uccc_cc_if_balanced(images_per_cluster: float) -> bool:
    """UCCC's check for CC's cluster loss from the bar of images per cluster up."""
    return images_per_cluster >= CC_IF_BALANCED_FROM_IMAGES_PER_CLUSTER


def choose_cc_if_balanced(profile: DataProfile, default: Any = None) -> Choice:
    """UCCC's ``cc_if_balanced`` from the images per cluster (``uccc_cc_if_balanced``)."""
    return by_images_per_cluster(
        profile, CC_IF_BALANCED_FROM_IMAGES_PER_CLUSTER, on_below=False,
        on="CC's cluster loss joins Eq. 6 if the head's clusters are of about equal size by 0.25-0.75 of "
           "the run (its balance term splits a large class where they are not)",
        off="Eq. 6 alone (CC's cluster loss cost 0.04-0.17 there even on balanced sets)")  # fmt: skip


def choose_strong_view(profile: DataProfile, default: Any = None) -> Choice:
    """UCCC's ``strong_view`` from the number of clusters, and off on a densely sampled set."""
    c, most = profile.num_classes, STRONG_VIEW_UP_TO
    if not uccc_strong_view(c):
        return Choice(False, f"{c} clusters (> {most}): the paper's two weak views, 1.5x the steps of three "
                             "(the strong view was level or behind at 100 clusters, behind at 200)")  # fmt: skip
    ratio, bar = profile.neighbor_ratio, DENSE_NEIGHBOR_RATIO
    if ratio is not None and ratio < bar:
        return Choice(False, f"an image's nearest neighbour lies at {ratio:.2f} of the median distance between two "
                             f"images (< {bar}): the set samples its classes densely (a turntable's poses), its "
                             "neighbours carry what varies within a class; the paper's two weak views (on the "
                             "suite's turntable 0.95-0.97 without the strong view, 0.85-0.88 with it)")  # fmt: skip
    return Choice(True, f"{c} clusters (<= {most}): SACC's RandAugment view as the third view")


def choose_instance_temperature(profile: DataProfile, default: float | None = None) -> Choice:
    """The instance contrast's temperature from the number of clusters; ``default`` is the method's
    own value on this backbone (None: the papers' 0.5)."""
    c, full, paper = profile.num_classes, INSTANCE_TEMPERATURE_FULL_UP_TO, PAPER_INSTANCE_TEMPERATURE
    own = paper if default is None else default
    tau = instance_contrast_temperature(c, own)
    if c <= full:
        return Choice(tau, f"{c} clusters (<= {full}): the method's {tau:g}")
    if tau == own:
        return Choice(tau, f"{c} clusters: the method's {tau:g}, already at most {paper:g} sqrt({full} / C)")
    return Choice(tau, f"{c} clusters: {paper:g} sqrt({full} / C) = {tau:g} (the method's {own:g} lowered): "
                       "with many classes the nearest negatives are other classes close by, and a lower "
                       "temperature weighs them more")  # fmt: skip


def cluster_contrast_temperature(num_clusters: int) -> float:
    """tau_C = 1 / (1 + ln((C - 1) / 9)) above 10 clusters, the paper's 1.0 up to 10, to three
    decimals (20 -> 0.572, 40 -> 0.405, 100 -> 0.294, 200 -> 0.244; see CC_CLUSTER_TEMPERATURE)."""
    ref = CLUSTER_TEMPERATURE_REFERENCE_CLUSTERS
    if num_clusters <= ref:
        return CC_CLUSTER_TEMPERATURE
    return round(1.0 / (1.0 / CC_CLUSTER_TEMPERATURE + math.log((num_clusters - 1) / (ref - 1))), 3)


def choose_cluster_temperature(profile: DataProfile, default: Any = None) -> Choice:
    """SACC's ``cluster_temperature`` from the number of clusters."""
    c, ref = profile.num_classes, CLUSTER_TEMPERATURE_REFERENCE_CLUSTERS
    tau = cluster_contrast_temperature(c)
    if c <= ref:
        return Choice(tau, f"{c} clusters (<= {ref}): the paper's {tau:g}")
    return Choice(tau, f"{c} clusters: 1 / (1 + ln((C - 1) / {ref - 1})) = {tau:g}, so that a negative column as "
                       f"close as the positive keeps the share of the cluster contrast it has at {ref} "
                       "clusters and tau 1")  # fmt: skip


def describe(choices: dict[str, Choice]) -> dict[str, dict[str, Any]]:
    """JSON form for ``config.json`` (``data_defaults``): field -> {value, reason}."""
    return {name: asdict(choice) for name, choice in choices.items()}
