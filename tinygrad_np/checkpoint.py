"""Training checkpoints: one .npz per run, written atomically after every epoch, never pickled.

Arrays (weights, optimizer moments) are stored as npz entries; everything else (hyperparameters, schedule,
random-generator states, history) as one JSON document inside the same file.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, corrupt, or belongs to another run."""


def _split(value: Any, arrays: dict[str, np.ndarray], prefix: str) -> Any:
    """Replace every ndarray in a nested structure by a reference, collecting the arrays."""
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, dict):
        return {str(k): _split(v, arrays, f"{prefix}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, arrays, f"{prefix}.{i}") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join(value: Any, arrays: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _join(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays) for v in value]
    return value


def save_state(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a nested dict of arrays and JSON values to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    document = _split(state, arrays, "")
    meta = json.dumps({"format": "tinygrad_np-checkpoint", "version": FORMAT_VERSION, "state": document})
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(handle, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read what `save_state` wrote; a damaged file raises CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({err})") from None
    if meta.get("format") != "tinygrad_np-checkpoint":
        raise CheckpointError(f"{path} is not a tinygrad_np checkpoint")
    return _join(meta["state"], arrays)


class CheckpointManager:
    """`save(trainer)` after each epoch, `restore(trainer)` to resume, in one folder."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "checkpoint.npz"

    def save(self, trainer: Any) -> None:
        save_state(trainer.state_dict(), self.path)

    def restore(self, trainer: Any) -> None:
        if not self.path.is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {self.path}")
        trainer.load_state_dict(load_state(self.path))
