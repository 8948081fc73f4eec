"""Plain JSON data from what training, models and reports hold: the one sanitiser for every JSON we write."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np


def to_json_data(value: Any) -> Any:
    """Mappings become dicts with string keys, lists and tuples lists, NumPy scalars and arrays numbers and lists,
    paths strings, and non-finite floats the strings "nan", "inf" and "-inf" (standard JSON has no NaN).

    Anything else that JSON can't hold raises TypeError naming its type.
    """
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(key): to_json_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_data(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else "inf" if value > 0 else "-inf"
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON data (numbers, strings, lists, dicts)")
