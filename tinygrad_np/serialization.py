"""Saving and loading models without pickle: one .npz holding the weights and the architecture as JSON.

File layout (a plain NumPy .npz archive, readable with `np.load(path, allow_pickle=False)`):

* `__tinygrad_np__`: uint8 array, the UTF-8 JSON header
  `{"format": "tinygrad-np-model", "version": 1, "spec": <canonical spec>, "metadata": {...}}`
* one array per parameter and buffer, named as in `model.state_dict()` ("0.weight", "0.bias", "1.running_mean",
  ...): the spec's dtype, but int64 for BatchNorm's `num_batches_tracked`.

`load_model(path)` rebuilds the model from the spec alone and refuses anything that doesn't match it exactly;
`read_metadata(path)` returns the metadata. Names, sizes and shapes are checked before any array is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np import nn
from tinygrad_np.errors import MissingFileError, UserError
from tinygrad_np.files import describe_path, write_atomic
from tinygrad_np.jsondata import to_json_data
from tinygrad_np.npz import ArchiveError, NpzReader
from tinygrad_np.spec import SpecError, model_from_spec, spec_from_model, state_shapes

FORMAT = "tinygrad-np-model"
VERSION = 1
HEADER_KEY = "__tinygrad_np__"
MAX_HEADER_BYTES = 16 * 2**20  # the spec and metadata as JSON: a few kilobytes in practice


class ModelFileError(UserError, ValueError):
    """A model file that can't be loaded: corrupt, not ours, or weights that don't fit its architecture."""


def save_model(model: nn.Module, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write `model`'s architecture (as a spec) and weights to `path` (.npz), atomically. Returns the path."""
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict (e.g. training metrics), got {type(metadata).__name__}")
    try:
        spec = spec_from_model(model)
    except SpecError as err:
        raise ValueError(f"save_model can't describe this model: {err}") from None
    weights = model.state_dict()
    for name, array in weights.items():
        if not np.isfinite(array).all():
            raise ValueError(f"parameter {name!r} holds NaN or inf values (did training diverge?); not saving it")
    try:
        # Metadata may hold NumPy scalars and arrays (metrics usually are): they become plain numbers and lists.
        header = to_json_data({"format": FORMAT, "version": VERSION, "spec": spec, "metadata": dict(metadata or {})})
    except TypeError as err:
        raise TypeError(f"metadata can't be written as JSON: {err}") from None
    text = json.dumps(header, allow_nan=False)
    arrays = {HEADER_KEY: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **weights}
    return write_atomic(path, lambda file: np.savez(file, **arrays))


def _header(archive: NpzReader, path: Path) -> dict[str, Any]:
    """The JSON header, checked for size, nesting, format and version before any weight is looked at."""
    if HEADER_KEY not in archive.names:
        if "__meta__" in archive.names:  # checkpoint.META_KEY: a training checkpoint, not a model file
            raise ModelFileError(
                f"{path}: a training checkpoint (what --checkpoint-dir holds, to resume with train --resume), not a "
                "model file; give the model file that train saves (--save; by default runs/model.npz)"
            )
        raise ModelFileError(
            f"{path}: not a tinygrad_np model file (no {HEADER_KEY!r} entry; was it written with np.savez "
            "instead of save_model?)"
        )
    declared = archive.header(HEADER_KEY)
    if declared.dtype != np.uint8 or len(declared.shape) != 1:
        raise ModelFileError(
            f"{path}: the {HEADER_KEY!r} entry must be UTF-8 bytes (uint8), got {declared.dtype} {declared.shape}"
        )
    raw = archive.read(HEADER_KEY, max_bytes=MAX_HEADER_BYTES)
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: the architecture header is not valid UTF-8 JSON ({err})") from None
    except RecursionError:
        raise ModelFileError(f"{path}: the architecture header is nested too deeply to be ours") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path}: the header doesn't say format {FORMAT!r}; not a tinygrad_np model file")
    if header.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: file format version {header.get('version')!r}, but this tinygrad_np reads version {VERSION} "
            "(saved by another release?)"
        )
    if not isinstance(header.get("metadata", {}), dict):
        raise ModelFileError(f"{path}: the header's metadata must be a JSON object")
    return header


def _weights(archive: NpzReader, header: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    """Every weight and buffer, once the names, dtypes and shapes the archive declares match the header's
    architecture."""
    try:
        expected = state_shapes(header.get("spec"))
    except SpecError as err:
        raise ModelFileError(f"{path}: the saved architecture is invalid: {err}") from None
    stored = [name for name in archive.names if name != HEADER_KEY]
    missing = [name for name in expected if name not in stored]
    unexpected = [name for name in stored if name not in expected]
    if missing or unexpected:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        )
        raise ModelFileError(f"{path}: the weights don't belong to the saved architecture ({'; '.join(problems)})")
    for name, (shape, dtype) in expected.items():
        declared = archive.header(name)
        if declared.shape != shape:
            raise ModelFileError(
                f"{path}: weight {name!r} has shape {declared.shape}, but the saved architecture needs {shape}"
            )
        if declared.dtype != np.dtype(dtype):
            raise ModelFileError(
                f"{path}: weight {name!r} is {declared.dtype}, but the saved architecture says {dtype}"
            )
    weights = {name: archive.read(name) for name in expected}
    for name, array in weights.items():
        if not np.isfinite(array).all():
            raise ModelFileError(f"{path}: weight {name!r} holds NaN or inf values")
    return weights


def _read(path: str | os.PathLike, with_weights: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and (if asked) the weights; nothing is inflated or allocated before it is checked."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"model file {path} {describe_path(path)} (save one with tinygrad_np.serialization.save_model)"
        )
    try:
        with NpzReader(path) as archive:
            header = _header(archive, path)
            return header, (_weights(archive, header, path) if with_weights else {})
    except ArchiveError as err:
        raise ModelFileError(f"{path}: {err}") from None


def load_model(path: str | os.PathLike) -> nn.Sequential:
    """Rebuild the model saved by `save_model`, in eval mode. Never unpickles; `read_metadata` gives the rest.

    Raises ModelFileError, naming the file, for anything that is not exactly what `save_model` writes."""
    header, weights = _read(path, with_weights=True)
    model = model_from_spec(header["spec"])
    model.load_state_dict(weights)
    return model.eval()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata dict `save_model` stored (e.g. training metrics), read without loading the weights."""
    return _read(path, with_weights=False)[0].get("metadata", {})
