"""Saving and loading models without pickle: one .npz holding the weights and the architecture as JSON.

File layout (a plain NumPy .npz archive, readable with `np.load(path, allow_pickle=False)`):

* `__tinygrad_np__`: uint8 array, the UTF-8 JSON header
  `{"format": "tinygrad-np-model", "version": 1, "spec": <canonical spec>, "metadata": {...}}`
* one array per parameter, named as in `model.state_dict()` ("0.weight", "0.bias", ...).

`load_model` rebuilds the model from the spec alone and refuses anything that doesn't match it exactly.
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

from tinygrad_np import nn
from tinygrad_np.files import write_atomic
from tinygrad_np.spec import SpecError, model_from_spec, normalize_spec, parameter_shapes, spec_from_model

FORMAT = "tinygrad-np-model"
VERSION = 1
HEADER_KEY = "__tinygrad_np__"


class ModelFileError(ValueError):
    """A model file that can't be loaded: corrupt, not ours, or weights that don't fit its architecture."""


def _json_default(value: Any) -> Any:
    """Let metadata hold NumPy scalars and arrays (metrics usually are), as plain JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata values must be JSON data (numbers, strings, lists, dicts), got {type(value).__name__}")


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
    header = {"format": FORMAT, "version": VERSION, "spec": spec, "metadata": dict(metadata or {})}
    try:
        text = json.dumps(header, default=_json_default)
    except (TypeError, ValueError) as err:
        raise TypeError(f"metadata can't be written as JSON: {err}") from None
    arrays = {HEADER_KEY: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **weights}
    return write_atomic(path, lambda file: np.savez(file, **arrays))


def _array(npz: Any, name: str, path: Path) -> np.ndarray:
    try:
        return npz[name]
    except ValueError as err:
        if "allow_pickle" in str(err):  # NumPy's words for an object array
            raise ModelFileError(
                f"{path}: array {name!r} holds pickled Python objects; refusing to load it "
                "(unpickling can run arbitrary code)"
            ) from None
        raise


def _header(npz: Any, path: Path) -> dict[str, Any]:
    if HEADER_KEY not in npz.files:
        raise ModelFileError(
            f"{path}: not a tinygrad_np model file (no {HEADER_KEY!r} entry; was it written with np.savez "
            "instead of save_model?)"
        )
    raw = _array(npz, HEADER_KEY, path)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: the {HEADER_KEY!r} entry must be UTF-8 bytes (uint8), got {raw.dtype}")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: the architecture header is not valid UTF-8 JSON ({err})") from None
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


def _read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and every weight array, fully read (so a bad CRC shows up here, not later)."""
    try:
        # We open the file, not np.load: when the archive is damaged, np.load can leave its own handle open.
        with open(path, "rb") as handle:
            npz = np.load(handle, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ModelFileError(f"{path}: a single .npy array, not a tinygrad_np model (.npz) file")
            with npz:
                header = _header(npz, path)
                weights = {name: _array(npz, name, path) for name in npz.files if name != HEADER_KEY}
                return header, weights
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, NotImplementedError) as err:
        if "pickle" in str(err):  # neither .npy nor .npz: NumPy would have tried to unpickle it
            raise ModelFileError(f"{path}: not an .npz archive (maybe a pickle or another format)") from None
        raise ModelFileError(f"{path}: truncated or corrupt ({type(err).__name__}: {err})") from None


def load_model(path: str | os.PathLike) -> tuple[nn.Sequential, dict[str, Any]]:
    """Rebuild a model saved by `save_model`: (model in eval mode, metadata dict). Never unpickles."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"model file {path} does not exist (save one with tinygrad_np.serialization.save_model)"
        )
    header, weights = _read(path)
    try:
        expected = parameter_shapes(header.get("spec"))
    except SpecError as err:
        raise ModelFileError(f"{path}: the saved architecture is invalid: {err}") from None
    # Check the stored arrays against the declared architecture before building it: a corrupt header must not
    # make us allocate whatever it declares.
    missing = [name for name in expected if name not in weights]
    unexpected = [name for name in weights if name not in expected]
    if missing or unexpected:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected)}"] if unexpected else []
        )
        raise ModelFileError(f"{path}: the weights don't belong to the saved architecture ({'; '.join(problems)})")
    dtype = np.dtype(normalize_spec(header["spec"])["dtype"])
    for name, shape in expected.items():
        array = weights[name]
        if array.shape != shape:
            raise ModelFileError(
                f"{path}: weight {name!r} has shape {array.shape}, but the saved architecture needs {shape}"
            )
        if array.dtype != dtype:
            raise ModelFileError(f"{path}: weight {name!r} is {array.dtype}, but the saved architecture says {dtype}")
        if not np.isfinite(array).all():
            raise ModelFileError(f"{path}: weight {name!r} holds NaN or inf values")
    model = model_from_spec(header["spec"])
    model.load_state_dict(weights)
    return model.eval(), header.get("metadata", {})
