"""Training checkpoints: one .npz per run, written atomically after every epoch (and on Ctrl-C), never pickled.

Arrays (weights, optimizer moments) are stored as npz entries; everything else (the run's configuration,
schedule, random-generator states, history, the position in an unfinished epoch) as one JSON document inside
the same file. Loading a file that is damaged, not a checkpoint, or from another configuration raises
CheckpointError with a message naming the file and what is wrong; nothing else escapes `load_state` or
`CheckpointManager.restore` (except FileNotFoundError for a missing file).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np.files import write_atomic

FORMAT = "tinygrad_np-checkpoint"
# 2: optimizer state in parameter groups, in PyTorch's layout (1 held one set of hyperparameters and step counts)
FORMAT_VERSION = 2
META_KEY = "__meta__"


class CheckpointError(ValueError):
    """A checkpoint file that is corrupt, not a checkpoint, or belongs to another run's configuration."""


def _split(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Replace every ndarray in a nested structure by a reference {"__array__": key}, collecting the arrays."""
    if isinstance(value, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, Mapping):
        return {str(k): _split(v, arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, arrays) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join(value: Any, arrays: dict[str, np.ndarray], path: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            key = value["__array__"]
            if not isinstance(key, str) or key not in arrays:
                raise CheckpointError(f"checkpoint {path} is damaged: it refers to a missing array {key!r}")
            return arrays[key]
        return {k: _join(v, arrays, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays, path) for v in value]
    return value


def save_state(state: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a nested dict of arrays and JSON values to `path` atomically (temp file, fsync, rename)."""
    arrays: dict[str, np.ndarray] = {}
    document = _split(state, arrays)
    # allow_nan=False: a NaN would be written as the non-JSON token NaN; refuse it here rather than on load.
    meta = json.dumps({"format": FORMAT, "version": FORMAT_VERSION, "state": document}, allow_nan=False)
    header = {META_KEY: np.frombuffer(meta.encode(), dtype=np.uint8)}
    return write_atomic(path, lambda handle: np.savez(handle, **header, **arrays))


# What NumPy and zipfile raise on a damaged archive: a bad CRC or header (BadZipFile, zlib.error, ValueError,
# EOFError), an unknown compression method (NotImplementedError), a header declaring an absurd array size
# (MemoryError), pickled data refused by allow_pickle=False (ValueError).
_DAMAGED = (
    OSError,
    ValueError,
    KeyError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    NotImplementedError,
    MemoryError,
)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    # We open the file, not np.load: when the archive is damaged, np.load can leave its own handle open.
    with open(path, "rb") as handle:
        try:
            loaded = np.load(handle, allow_pickle=False)
        except _DAMAGED as err:
            raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({_brief(err)})") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"{path} holds a single .npy array, not a checkpoint (.npz)")
        with loaded as npz:
            try:
                arrays = {key: npz[key] for key in npz.files}
            except _DAMAGED as err:
                raise CheckpointError(f"checkpoint {path} is damaged or truncated ({_brief(err)})") from None
    for key, array in arrays.items():
        if not isinstance(array, np.ndarray):  # NumPy hands back a non-.npy archive member as raw bytes
            raise CheckpointError(f"checkpoint {path} is damaged: entry {key!r} is not an array")
    return arrays


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read what `save_state` wrote; a damaged or foreign file raises CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    arrays = _read_arrays(path)
    raw = arrays.pop(META_KEY, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise CheckpointError(f"{path} is not a tinygrad_np checkpoint (no {META_KEY!r} entry of UTF-8 bytes)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its JSON document is unreadable ({_brief(err)})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a tinygrad_np checkpoint (its header doesn't say {FORMAT!r})")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {meta.get('version')!r}; this tinygrad_np reads version "
            f"{FORMAT_VERSION}"
        )
    state = _join(meta.get("state"), arrays, path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is damaged: its state is not a JSON object")
    return state


def _brief(err: BaseException) -> str:
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= 160 else text[:157] + "..."


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


class CheckpointManager:
    """`save(trainer)` after each epoch (or on Ctrl-C), `restore(trainer)` to resume; one file in `directory`.

    `config` (JSON data: hyperparameters, architecture, data) is stored with every checkpoint, and `restore`
    refuses a checkpoint whose config differs, naming the fields: resuming someone else's run would silently
    train a different model.
    """

    def __init__(self, directory: str | os.PathLike, config: Mapping[str, Any] | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / "checkpoint.npz"
        # Through JSON once, so tuples compare equal to the lists a loaded checkpoint holds.
        self.config = json.loads(json.dumps(dict(config or {})))

    def save(self, trainer: Any) -> Path:
        return save_state({"config": self.config, "trainer": trainer.state_dict()}, self.path)

    def restore(self, trainer: Any) -> None:
        """Load the checkpoint into `trainer` (on failure, build a fresh trainer: this one may be half loaded)."""
        if not self.path.is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {self.path}")
        state = load_state(self.path)
        if not isinstance(state.get("trainer"), dict) or not isinstance(state.get("config"), dict):
            raise CheckpointError(f"checkpoint {self.path} is damaged: it lacks the trainer state or the config")
        saved = state["config"]
        differences = [
            f"{key} {_shown(saved.get(key))} there, {_shown(self.config.get(key))} here"
            for key in sorted(set(saved) | set(self.config))
            if saved.get(key) != self.config.get(key)
        ]
        if differences:
            raise CheckpointError(
                f"checkpoint {self.path} was written by a different configuration ({'; '.join(differences)}); "
                "resume with the same options, or use another --checkpoint-dir for a new run"
            )
        try:
            trainer.load_state_dict(state["trainer"])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise CheckpointError(
                f"checkpoint {self.path} doesn't fit this model and optimizer ({_brief(err)})"
            ) from None
