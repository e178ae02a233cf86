"""Launching, stopping and resuming training runs as separate processes.

A launched run is ``python -m clustering train ... --run-id ID --out RUNS --no-progress`` in its
own session (``start_new_session=True``) so it survives a browser refresh, a studio restart and
Ctrl-C in the studio's terminal. Its output goes to ``RUNS/.studio-logs/ID.log``; everything the
studio shows about it afterwards comes from the run directory.

The launch form is built from a method's ``Params`` dataclass (:func:`param_specs`), so a newly
registered method gets its own fields without any studio change.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.logic.runsdir import REPO_ROOT, log_path, record_launch
from clustering.augment import PRESETS

# What the launch form offers, re-exported (``as`` names) so the pages import the logic layer only.
from clustering.data import get_source as get_source
from clustering.data import source_names as source_names
from clustering.errors import UserError as UserError
from clustering.methods import backbone_overrides as backbone_overrides
from clustering.methods import get_method, method_names
from clustering.runs import new_run_id, request_stop
from clustering.umap_gmm import IF_UNEVEN

AUGMENT_PRESETS = tuple(sorted(PRESETS))


def graph_method(run_method: str | None) -> str:
    """The method a community-graph launch trains: the run's own when it has UCCC's graph
    parameters (``khop``, ``pos_conf``), else UCCC."""
    if run_method in method_names():
        fields = {f.name for f in dataclasses.fields(get_method(run_method).Params)}
        if {"khop", "pos_conf"} <= fields:
            return str(run_method)
    return "uccc"


@dataclass(frozen=True)
class ParamSpec:
    """One method hyperparameter as a form field.

    kind: ``bool``, ``int``, ``float``, ``str`` or ``choice``; ``optional`` means None is allowed
    (and is the value of an empty field).
    """

    name: str
    kind: str
    default: Any
    optional: bool = False
    choices: tuple[Any, ...] = ()
    help: str = ""


def _field_help(params_cls: type, name: str) -> str:
    """The Params docstring's entry for ``name`` (``name: text`` plus deeper-indented lines)."""
    lines = (params_cls.__doc__ or "").splitlines()
    for i, line in enumerate(lines):
        if not line.strip().startswith(f"{name}:"):
            continue
        indent = len(line) - len(line.lstrip())
        text = [line.strip()[len(name) + 1 :].strip()]
        for cont in lines[i + 1 :]:
            if not cont.strip() or len(cont) - len(cont.lstrip()) <= indent:
                break
            text.append(cont.strip())
        return " ".join(t for t in text if t)
    return ""


def param_specs(method_cls: type) -> list[ParamSpec]:
    """Form fields for every field of ``method_cls.Params``, with its registered default."""
    params_cls = method_cls.Params
    hints = typing.get_type_hints(params_cls)
    defaults = params_cls()
    specs = []
    for f in dataclasses.fields(params_cls):
        annotation = hints.get(f.name, f.type)
        default = getattr(defaults, f.name)
        optional = False
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = len(args) < len(typing.get_args(annotation))
            annotation = args[0] if args else str
            origin = typing.get_origin(annotation)
        if origin is typing.Literal:
            kind, choices = "choice", tuple(typing.get_args(annotation))
        elif annotation is bool:
            kind, choices = "bool", ()
        elif annotation is int:
            kind, choices = "int", ()
        elif annotation is float:
            kind, choices = "float", ()
        else:
            kind, choices = "str", ()
        specs.append(ParamSpec(f.name, kind, default, optional, choices, _field_help(params_cls, f.name)))
    return specs


#: The values of an optional switch in the form: None (chosen from the data), on, off.
OPTIONAL_BOOL_CHOICES: tuple[bool | None, ...] = (None, True, False)
#: The end-of-run UMAP + GMM: auto, on, off, or only where the head comes out uneven (``--umap-gmm-if-uneven``).
UMAP_GMM_CHOICES: tuple[bool | str | None, ...] = (None, True, False, IF_UNEVEN)


def optional_bool_label(value: bool | None) -> str:
    """How the form shows an optional switch's value."""
    return "auto (from the data)" if value is None else ("true" if value else "false")


def umap_gmm_label(value: bool | str | None) -> str:
    """How the form shows a ``umap_gmm`` choice."""
    if value == IF_UNEVEN:
        return "if the head is uneven"
    return optional_bool_label(value)


def format_param(value: Any) -> str:
    """A value as the CLI's ``--param name=value`` expects it (None -> ``none``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def changed_params(specs: list[ParamSpec], values: dict[str, Any], as_shown: bool = False) -> dict[str, Any]:
    """Only the values that differ from the registered defaults (the run's config.json records
    the resolved full set anyway, and a shorter command line is easier to read).

    A value left at its registered default is not sent, so a method's per-backbone default
    (``train_defaults.by_backbone``) still replaces it; ``as_shown`` sends every value, which
    is how a user keeps a registered default on such a backbone.
    """
    out = {}
    for spec in specs:
        if spec.name not in values:
            continue
        value = values[spec.name]
        if as_shown:
            out[spec.name] = value
            continue
        same = value == spec.default or (
            isinstance(value, float) and isinstance(spec.default, float) and math.isclose(value, spec.default)
        )
        if not same:
            out[spec.name] = value
    return out


@dataclass
class LaunchRequest:
    """What the launch form collects; None means "the method's or data set's default"."""

    method: str = "uccc"
    dataset: str = "digits"
    root: str | None = None
    backbone: str | None = None
    image_size: int | None = None
    augment: str | None = None
    epochs: int | None = None
    minutes: float | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = 1
    self_label: float | None = None  # start of the self-labelling stage, a fraction of the run
    refit_head: bool | None = None  # the end-of-run head refit; None = from the data
    split_merge: bool | None = None  # the end-of-run split-and-merge moves; None = from the data
    kmeans_restarts: int | None = None  # the end-of-run k-means restarts; None = from the method
    umap_gmm: bool | str | None = None  # the end-of-run UMAP + GMM partition (UMAP_GMM_CHOICES); None = from the method
    params: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None


def train_command(
    req: LaunchRequest, runs_folder: Path, python: str = sys.executable
) -> tuple[list[str], str]:
    """The ``python -m clustering train`` argv for ``req`` and the run id it will use."""
    run_id = req.run_id or new_run_id(req.method, req.dataset)
    cmd = [python, "-m", "clustering", "train", "--method", req.method, "--dataset", req.dataset]
    if req.root:
        cmd += ["--root", str(req.root)]
    if req.backbone:
        cmd += ["--backbone", req.backbone]
    if req.image_size:
        cmd += ["--image-size", str(int(req.image_size))]
    if req.augment:
        cmd += ["--augment", req.augment]
    if req.epochs is not None:
        cmd += ["--epochs", str(int(req.epochs))]
    if req.minutes is not None:
        cmd += ["--minutes", repr(float(req.minutes))]
    if req.batch_size is not None:
        cmd += ["--batch-size", str(int(req.batch_size))]
    if req.lr is not None:
        cmd += ["--lr", repr(float(req.lr))]
    cmd += ["--seed", str(int(req.seed)), "--device", req.device]
    if req.threads:
        cmd += ["--threads", str(int(req.threads))]
    if req.self_label is not None:
        cmd += ["--self-label", repr(float(req.self_label))]
    if req.refit_head is not None:
        cmd += ["--refit-head" if req.refit_head else "--no-refit-head"]
    if req.split_merge is not None:
        cmd += ["--split-merge" if req.split_merge else "--no-split-merge"]
    if req.kmeans_restarts is not None:
        cmd += ["--kmeans-restarts", str(int(req.kmeans_restarts))]
    if req.umap_gmm is not None:
        flag = "--umap-gmm-if-uneven" if req.umap_gmm == IF_UNEVEN else "--umap-gmm" if req.umap_gmm else None
        cmd += [flag or "--no-umap-gmm"]
    for name, value in req.params.items():
        cmd += ["--param", f"{name}={format_param(value)}"]
    # Absolute: the trainer runs with the repository as its working directory.
    cmd += ["--run-id", run_id, "--out", str(Path(runs_folder).absolute()), "--no-progress"]
    return cmd, run_id


def preview_defaults(req: LaunchRequest) -> list[dict[str, str]]:
    """The settings ``req`` leaves to the data-aware defaults, as the trainer will choose them:
    one row per setting with its value and the reason (``clustering.data_defaults``).

    Loads the data set (at its native size) and resolves the config exactly as ``train`` does;
    raises the trainer's own ``UserError`` for a data set it could not train on.
    """
    from clustering.config import TrainConfig
    from clustering.data import load_dataset
    from clustering.setup import resolve_config

    data = load_dataset(req.dataset, req.root, image_size=req.image_size)
    config = TrainConfig(method=req.method, dataset=req.dataset, root=req.root, backbone=req.backbone,
                         image_size=req.image_size, augment=req.augment, batch_size=req.batch_size,
                         device=req.device, refit_head=req.refit_head, split_merge=req.split_merge,
                         kmeans_restarts=req.kmeans_restarts, umap_gmm=req.umap_gmm,
                         method_params=dict(req.params))  # fmt: skip
    resolved = resolve_config(config, data)
    return [{"setting": name, "value": str(choice["value"]), "why": choice["reason"]}
            for name, choice in resolved.data_defaults.items()]  # fmt: skip


def resume_command(
    run_dir: Path, epochs: int | None = None, minutes: float | None = None, python: str = sys.executable
) -> list[str]:
    """``--resume RUN_DIR`` with an optional new budget (more epochs, or extra minutes)."""
    cmd = [python, "-m", "clustering", "train", "--resume", str(run_dir), "--no-progress"]
    if epochs is not None:
        cmd += ["--epochs", str(int(epochs))]
    if minutes is not None:
        cmd += ["--minutes", repr(float(minutes))]
    return cmd


#: Trainers started by this studio process. Kept only to reap them when they exit, so finished
#: runs do not linger as zombies (``clustering.runs.pid_alive`` already counts a zombie as dead).
_children: list[subprocess.Popen] = []


def reap() -> int:
    """Collect the exit status of finished trainers started here; returns how many still run."""
    _children[:] = [p for p in _children if p.poll() is None]
    return len(_children)


def spawn(cmd: list[str], runs_folder: Path, run_id: str) -> int:
    """Start ``cmd`` detached from the studio; returns its pid.

    ``start_new_session`` puts the trainer in its own process group, so stopping the studio
    (or a Ctrl-C in its terminal) does not kill the run. The log is appended to, so a resumed
    run keeps one log.
    """
    runs_folder = Path(runs_folder)
    runs_folder.mkdir(parents=True, exist_ok=True)
    log = log_path(runs_folder, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The trainer imports `clustering` from the repository, whatever folder the studio runs in.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    with open(log, "ab") as fh:
        fh.write(f"$ {' '.join(cmd)}\n".encode())
        fh.flush()
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    _children.append(proc)
    reap()
    record_launch(runs_folder, run_id, proc.pid, cmd, time.time())
    return proc.pid


def launch(req: LaunchRequest, runs_folder: Path) -> tuple[str, int]:
    cmd, run_id = train_command(req, runs_folder)
    return run_id, spawn(cmd, runs_folder, run_id)


def resume(run_dir: Path, runs_folder: Path, epochs: int | None = None, minutes: float | None = None) -> int:
    run_dir = Path(run_dir)
    return spawn(resume_command(run_dir, epochs, minutes), runs_folder, run_dir.name)


def stop(run_dir: Path) -> None:
    """Clean stop: the trainer sees the STOP file, checkpoints and marks the run ``stopped``."""
    request_stop(Path(run_dir))
