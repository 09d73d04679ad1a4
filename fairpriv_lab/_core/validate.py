"""Small argument checks; every message follows one template naming parameter, value, range."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np

from .exceptions import ConfigError

_TEMPLATE = "Expected {name}={value!r} {allowed}"


def fail(name: str, value: Any, allowed: str, hint: str = "") -> ConfigError:
    """Build (not raise) the ConfigError of the one template: 'Expected name=value allowed.'."""
    msg = _TEMPLATE.format(name=name, value=value, allowed=allowed)
    if hint:
        msg += f". {hint}"
    return ConfigError(msg)


def choice(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return value if it is one of choices, else raise naming the choices."""
    options = list(choices)
    if value not in options:
        raise fail(name, value, "to be one of " + ", ".join(repr(c) for c in options))
    return value


def number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return value as float if it lies in the interval, else raise naming the interval."""
    lb = "(" if low_open else "["
    rb = ")" if high_open else "]"
    if low == -math.inf:
        lb = "("
    if high == math.inf:
        rb = ")"
    allowed = f"in {lb}{_fmt(low)}, {_fmt(high)}{rb}"
    if isinstance(value, bool) or not isinstance(value, Real | np.floating | np.integer):
        raise fail(name, value, f"to be a real number {allowed}")
    v = float(value)
    if math.isnan(v):
        raise fail(name, value, allowed)
    too_low = v <= low if low_open else v < low
    too_high = v >= high if high_open else v > high
    if too_low or too_high:
        raise fail(name, value, allowed)
    return v


def positive(name: str, value: Any) -> float:
    """Return value if it is a finite number > 0."""
    return number(name, value, 0.0, math.inf, low_open=True, high_open=True)


def integer(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Return value as int if it is an integer in [low, high]."""
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    allowed = f"to be an integer in [{lo}, {hi}]"
    if isinstance(value, bool) or not isinstance(value, Integral | np.integer):
        raise fail(name, value, allowed)
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise fail(name, value, allowed)
    return v


def bool_matrix(name: str, value: Any, shape: Sequence[int | None] | None = None) -> np.ndarray:
    """Return value as a 2-D bool array, checking the dtype and optional shape."""
    arr = np.asarray(value)
    if arr.dtype != np.bool_:
        raise fail(name, f"array of dtype {arr.dtype}", "to be a bool array (True = member)")
    if arr.ndim != 2:
        raise fail(name, f"array of shape {arr.shape}", "to be 2-D (n_models, n_samples)")
    if shape is not None:
        for axis, (got, want) in enumerate(zip(arr.shape, shape)):
            if want is not None and got != want:
                raise fail(name, f"array of shape {arr.shape}", f"to have size {want} on axis {axis}")
    return arr


def float_array(name: str, value: Any, ndim: int, *, finite: bool = True) -> np.ndarray:
    """Return value as a float64 array with ndim dimensions (and finite entries)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != ndim:
        raise fail(name, f"array of shape {arr.shape}", f"to have {ndim} dimension(s)")
    if finite and not np.all(np.isfinite(arr)):
        raise fail(name, "an array with NaN or infinite entries", "to be finite")
    return arr


def group_ids(name: str, value: Any, n: int | None = None, n_groups: int | None = None) -> np.ndarray:
    """Return integer group ids in 0..n_groups-1 as an int64 array."""
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise fail(name, f"array of shape {arr.shape}", "to be 1-D")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise fail(name, "a float array with non-integer entries", "to hold integer group ids")
    elif arr.dtype.kind not in "iub":
        raise fail(name, f"array of dtype {arr.dtype}", "to hold integer group ids")
    arr = arr.astype(np.int64)
    if n is not None and arr.shape[0] != n:
        raise fail(name, f"array of length {arr.shape[0]}", f"to have length {n}")
    if arr.size and arr.min() < 0:
        raise fail(name, f"ids down to {arr.min()}", "to be >= 0")
    if n_groups is not None and arr.size and arr.max() >= n_groups:
        raise fail(name, f"ids up to {arr.max()}", f"to be < n_groups={n_groups}")
    return arr


def _fmt(x: float) -> str:
    if x == math.inf:
        return "inf"
    if x == -math.inf:
        return "-inf"
    return f"{x:g}"


#: Deepest nesting of lists/dicts accepted in a parameter or config value from a file.
MAX_JSON_DEPTH = 32


def json_value(name: str, value: Any, *, _depth: int = 0) -> Any:
    """Return value as plain JSON types (tuples become lists); reject anything else.

    Accepted: None, bool, int, float, str, and lists/tuples/dicts (string keys) of them, at
    most :data:`MAX_JSON_DEPTH` deep. Everything else (bytes from YAML ``!!binary``, dates,
    sets, objects) raises naming the parameter: such values cannot be written into a
    notebook's injected parameters cell safely (papermill writes them as unescaped text).
    """
    if _depth > MAX_JSON_DEPTH:
        raise fail(name, "a value nested deeper than " + str(MAX_JSON_DEPTH), "to be at most "
                   f"{MAX_JSON_DEPTH} lists/mappings deep")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, Integral | np.integer):
        return int(value)
    if isinstance(value, Real | np.floating):
        return float(value)
    if isinstance(value, list | tuple):
        return [json_value(f"{name}[{i}]", v, _depth=_depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise fail(f"{name} key", k, "to be a string")
            out[k] = json_value(f"{name}.{k}", v, _depth=_depth + 1)
        return out
    shown = value if len(repr(value)) <= 80 else f"a {type(value).__name__} value"
    raise fail(name, shown, "to be a JSON value (null, true/false, a number, a string, or a list or "
               f"mapping of them), not {type(value).__name__}")
