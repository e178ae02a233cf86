"""Checkpoints: atomic writes, safe loads (``weights_only=True``), and RNG state capture."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clustering.errors import CheckpointError, ConfigError
from clustering.faults import fault_point
from clustering.runs import atomic_path, checkpoint_path

FORMAT = "cluster-studio-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "model", "epoch", "step")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format tags) to ``path`` atomically: temp file, then rename."""
    payload = {"format": FORMAT, "version": FORMAT_VERSION, **payload}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)
        fault_point("checkpoint", payload.get("step"))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, unreadable/corrupt, or not one of ours.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{str(path)!r} is not a readable checkpoint (corrupt or foreign file): {first_line}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a Cluster Studio checkpoint (no '{FORMAT}' format tag)")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    if payload["version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {payload['version']}; this package reads <= {FORMAT_VERSION}"
        )
    return payload


def capture_rng(augment_generator: torch.Generator) -> dict[str, Any]:
    """Every RNG a training step touches, in types that ``weights_only`` loading accepts."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
        "augment": augment_generator.get_state(),
        "augment_device": str(augment_generator.device),
    }  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], augment_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
         np_state["cached"])
    )  # fmt: skip
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    if str(augment_generator.device) == state.get("augment_device", str(augment_generator.device)):
        augment_generator.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_last_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``checkpoints/last.pt`` of the run in ``run_dir``, to resume it."""
    last = checkpoint_path(run_dir, "last")
    if last is None:
        raise ConfigError(f"{str(run_dir)!r} has no checkpoints/last.pt to resume from")
    return load_checkpoint(last, map_location=map_location)
