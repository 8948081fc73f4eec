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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np.errors import MissingFileError, UserError
from tinygrad_np.files import describe_path, write_atomic
from tinygrad_np.npz import ArchiveError, NpzReader

FORMAT = "tinygrad_np-checkpoint"
# 2: optimizer state in parameter groups, in PyTorch's layout (1 held one set of hyperparameters and step counts)
FORMAT_VERSION = 2
META_KEY = "__meta__"
MAX_DOCUMENT_BYTES = 16 * 2**20  # the JSON document: configuration, history and random states, a few KB
MAX_STATE_BYTES = 2**31  # load_state's default bound on the arrays; restore derives a tighter one from the trainer
# restore's bound: arrays the size of the model's parameters, at most this many per parameter (Adam needs three:
# the weights and two moments), plus 1 MiB for the small ones
STATE_ARRAYS_PER_PARAMETER = 8


class CheckpointError(UserError, ValueError):
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


def _references(value: Any, found: set[str]) -> set[str]:
    """The array keys a JSON document refers to ({"__array__": key}), collected into `found`."""
    if isinstance(value, dict):
        if set(value) == {"__array__"} and isinstance(value["__array__"], str):
            found.add(value["__array__"])
        for item in value.values():
            _references(item, found)
    elif isinstance(value, list):
        for item in value:
            _references(item, found)
    return found


def _read_document(archive: NpzReader, path: Path) -> dict[str, Any]:
    if META_KEY not in archive.names:
        raise CheckpointError(f"{path} is not a tinygrad_np checkpoint (no {META_KEY!r} entry of UTF-8 bytes)")
    declared = archive.header(META_KEY)
    if declared.dtype != np.uint8 or len(declared.shape) != 1:
        raise CheckpointError(f"{path} is not a tinygrad_np checkpoint (no {META_KEY!r} entry of UTF-8 bytes)")
    raw = archive.read(META_KEY, max_bytes=MAX_DOCUMENT_BYTES)
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
    return meta


def load_state(path: str | os.PathLike, max_bytes: int = MAX_STATE_BYTES) -> dict[str, Any]:
    """Read what `save_state` wrote; a damaged or foreign file raises CheckpointError naming it.

    Before any array is read, the archive must hold exactly the arrays its JSON document refers to, and their
    .npy headers may declare at most `max_bytes` in all: a checkpoint with an extra member, or one that
    inflates to gigabytes, is refused at the cost of its headers."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no checkpoint at {path} (it {describe_path(path)})")
    try:
        with NpzReader(path) as archive:
            meta = _read_document(archive, path)
            try:
                keys = _references(meta.get("state"), set())
            except RecursionError:
                raise CheckpointError(f"checkpoint {path} is damaged: its JSON document is nested too deeply") from None
            stored = set(archive.names) - {META_KEY}
            if stored - keys:
                raise CheckpointError(
                    f"checkpoint {path} holds entries its state never refers to ({', '.join(sorted(stored - keys))}); "
                    "it was not written by tinygrad_np, or was tampered with"
                )
            if keys - stored:
                raise CheckpointError(
                    f"checkpoint {path} is damaged: it refers to missing arrays ({', '.join(sorted(keys - stored))})"
                )
            declared = sum(archive.header(key).nbytes for key in keys)
            if declared > max_bytes:
                raise CheckpointError(
                    f"checkpoint {path} declares {declared:,} bytes of arrays, more than the {max_bytes:,} expected; "
                    "it belongs to a much larger model, or was tampered with"
                )
            arrays = {key: archive.read(key) for key in keys}
    except ArchiveError as err:
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({err})") from None
    try:
        state = _join(meta.get("state"), arrays, path)
    except RecursionError:
        raise CheckpointError(f"checkpoint {path} is damaged: its JSON document is nested too deeply") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is damaged: its state is not a JSON object")
    return state


def _saved_config(path: Path) -> Any:
    """The config a checkpoint was written with, read from its JSON document alone (no array is read)."""
    try:
        with NpzReader(path) as archive:
            meta = _read_document(archive, path)
    except ArchiveError as err:
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint ({err})") from None
    state = meta.get("state")
    return state.get("config") if isinstance(state, dict) else None


# Differences a refusal names; the rest are counted (another network differs in dozens of its spec's fields).
SHOWN_DIFFERENCES = 3


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
            raise MissingFileError(f"nothing to resume: no checkpoint at {self.path}")
        # The config first, from the JSON document alone: a larger network's checkpoint would otherwise be refused
        # by the size limit below, which is this model's, as if it were damaged.
        saved = _saved_config(self.path)
        if not isinstance(saved, dict):
            raise CheckpointError(f"checkpoint {self.path} is damaged: it lacks the config")
        differences = [
            f"{key} {_shown(saved.get(key))} there, {_shown(self.config.get(key))} here"
            for key in sorted(set(saved) | set(self.config))
            if saved.get(key) != self.config.get(key)
        ]
        if differences:
            more = len(differences) - SHOWN_DIFFERENCES
            shown = "; ".join(differences[:SHOWN_DIFFERENCES]) + (f"; and {more} more" if more > 0 else "")
            raise CheckpointError(
                f"checkpoint {self.path} was written by a different configuration ({shown}); "
                "resume with the same options, or use another --checkpoint-dir for a new run"
            )
        parameters = [p.data for p in trainer.model.parameters()]
        state = load_state(self.path, STATE_ARRAYS_PER_PARAMETER * sum(p.nbytes for p in parameters) + 2**20)
        if not isinstance(state.get("trainer"), dict) or not isinstance(state.get("config"), dict):
            raise CheckpointError(f"checkpoint {self.path} is damaged: it lacks the trainer state or the config")
        _check_dtypes(state["trainer"], trainer.model.state_dict(), {p.dtype for p in parameters}, self.path)
        try:
            trainer.load_state_dict(state["trainer"])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, OverflowError) as err:
            raise CheckpointError(
                f"checkpoint {self.path} doesn't fit this model and optimizer ({_brief(err)})"
            ) from None


def _check_dtypes(saved: dict[str, Any], weights: dict[str, np.ndarray], dtypes: set[np.dtype], path: Path) -> None:
    """Refuse a checkpoint whose arrays are not the model's dtypes: loading would silently cast them."""
    saved_weights = saved.get("model")
    if isinstance(saved_weights, dict):
        for name, array in saved_weights.items():
            if isinstance(array, np.ndarray) and name in weights and array.dtype != weights[name].dtype:
                raise CheckpointError(
                    f"checkpoint {path} doesn't fit this model and optimizer: weight {name!r} is {array.dtype}, "
                    f"the model's is {weights[name].dtype} (a checkpoint is restored exactly, never cast)"
                )
    for where, array in _arrays(saved, "trainer"):
        if np.issubdtype(array.dtype, np.inexact) and array.dtype not in dtypes:
            raise CheckpointError(
                f"checkpoint {path} doesn't fit this model and optimizer: {where} is {array.dtype}, the model is "
                f"{' and '.join(sorted(map(str, dtypes)))} (a checkpoint is restored exactly, never cast)"
            )


def _arrays(value: Any, where: str) -> list[tuple[str, np.ndarray]]:
    """Every array in a nested state, with where it sits ("trainer.optimizer.state[0].exp_avg")."""
    if isinstance(value, np.ndarray):
        return [(where, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _arrays(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in _arrays(item, f"{where}[{index}]")]
    return []
