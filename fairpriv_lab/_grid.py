"""Grid files for sweeps: parse, flatten, type-check and expand before anything runs.

A grid file has up to three sections (every other top-level key is an error)::

    base:   {key: value, ...}        # fixed settings of every point
    grid:   {key: [v1, v2, ...]}     # the Cartesian product of these lists
    points: [{key: value}, ...]      # explicit extra points, each on top of base

Keys are the fields of a config dataclass (the *schema*), nested dataclasses written with dots
(``training.epochs``) or as nested mappings. Without a schema any key is accepted (notebook
parameters are checked against the notebook instead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from .exceptions import ConfigError

SECTIONS = ("base", "grid", "points")
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_ANY = object()  # annotation we cannot check here; the config's own validation judges it


@dataclass(frozen=True)
class Schema:
    """Valid keys of a config: dotted leaf fields with their annotations, and aliases.

    A key may also be written as its last part when that is unique (``epsilon`` for
    ``train.epsilon``), or as an alias the config declares (``dataset`` for ``data.name``).
    """

    fields: Mapping[str, Any]
    aliases: Mapping[str, str]

    def __contains__(self, key: object) -> bool:
        return key in self.fields

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __iter__(self):
        return iter(self.fields)

    def canonical(self, key: str, where: str) -> str:
        """Return the dotted field a key names; raise ConfigError listing the valid keys."""
        if key in self.fields:
            return key
        if key in self.aliases and self.aliases[key] in self.fields:
            return self.aliases[key]
        owners = [k for k in self.fields if k.rsplit(".", 1)[-1] == key]
        if len(owners) == 1:
            return owners[0]
        if len(owners) > 1:
            raise ConfigError(f"Key {key!r} in {where} is ambiguous; write one of {', '.join(owners)}")
        raise ConfigError(
            f"Unknown key {key!r} in {where}; valid keys are: {', '.join(self.fields)}"
            + (f" (or a unique last part such as {self._short_example()})" if "." in "".join(self.fields) else "")
        )

    def _short_example(self) -> str:
        return next((repr(k.rsplit(".", 1)[-1]) for k in self.fields if "." in k), "")


def schema_of(cls: type) -> Schema:
    """The Schema of a (possibly nested) config dataclass; aliases from ``cls.KEY_ALIASES``.

    Without that attribute, the module-level ``_ALIASES`` mapping of the class's module is used
    (how :mod:`fairpriv_lab.experiment`'s configs declare ``dataset`` -> ``data.name``).
    """
    aliases = getattr(cls, "KEY_ALIASES", None)
    if aliases is None:
        aliases = getattr(sys.modules.get(cls.__module__), "_ALIASES", {})
    return Schema(_fields_of(cls), dict(aliases) if isinstance(aliases, Mapping) else {})


def _fields_of(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable forward references: fall back to no type checks
        hints = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        ann = hints.get(f.name, _ANY)
        if isinstance(ann, type) and dataclasses.is_dataclass(ann):
            for sub, sub_ann in _fields_of(ann).items():
                out[f"{f.name}.{sub}"] = sub_ann
        else:
            out[f.name] = ann
    return out


def flatten(mapping: Mapping[str, Any], schema: Schema | None, where: str) -> dict:
    """Flatten nested mappings into dotted keys where the schema has nested fields."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ConfigError(f"Expected every key of {where} to be a string, got {key!r}")
        nested = schema is not None and key not in schema and any(k.startswith(key + ".") for k in schema)
        if nested and isinstance(value, Mapping):
            for sub, sub_value in flatten(value, None, where).items():
                out[f"{key}.{sub}"] = sub_value
        else:
            out[key] = value
    return out


def unflatten(point: Mapping[str, Any]) -> dict[str, Any]:
    """Turn dotted keys back into nested dicts: {'a.b': 1} -> {'a': {'b': 1}}."""
    out: dict[str, Any] = {}
    for key, value in point.items():
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def canonical_key(key: str, schema: Schema | None, where: str) -> str:
    """Return the schema's dotted name for key (any key when there is no schema)."""
    return key if schema is None else schema.canonical(key, where)


def coerce(key: str, value: Any, annotation: Any, where: str) -> Any:
    """Return value converted to the annotation (lists to tuples, '1e-5' to float) or raise."""
    ok, converted = _match(value, annotation)
    if not ok:
        raise ConfigError(
            f"Expected {key}={value!r} in {where} to be {_describe(annotation)}, "
            f"got {type(value).__name__}"
        )
    return converted


def _match(value: Any, ann: Any) -> tuple[bool, Any]:
    if ann is _ANY or ann is Any or ann is object:
        return True, _freeze(value)
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return (value in typing.get_args(ann) and not _bool_mismatch(value, typing.get_args(ann))), value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(ann):
            ok, conv = _match(value, arm)
            if ok:
                return True, conv
        return False, value
    if ann is type(None):
        return value is None, value
    if ann is bool:
        return isinstance(value, bool), value
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if ann is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int | float):
            return True, float(value)
        # PyYAML reads 1e-5 (no dot) as a string; accept numeric text for float fields.
        if isinstance(value, str) and (_FLOAT_TEXT.match(value.strip()) or value.strip() in ("inf", "nan")):
            return True, float(value)
        return False, value
    if ann is str:
        return isinstance(value, str), value
    if origin in (tuple, list) or ann in (tuple, list):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        if isinstance(value, Mapping) and len(args) == 1 and typing.get_origin(args[0]) is tuple:
            return True, tuple(sorted((k, _freeze(v)) for k, v in value.items()))  # pairs
        if not isinstance(value, list | tuple):
            if len(args) == 1 and not isinstance(value, Mapping):
                ok, conv = _match(value, args[0])  # one value for a list field: a 1-tuple
                return ok, (conv,)
            return False, value
        if len(args) == 1:
            items = [_match(v, args[0]) for v in value]
            if not all(ok for ok, _ in items):
                return False, value
            return True, tuple(conv for _, conv in items)
        return True, _freeze(value)
    if origin in (dict, Mapping) or ann in (dict, Mapping):
        return isinstance(value, Mapping), value
    return True, _freeze(value)  # a type we do not know: leave it to the config's validation


def _bool_mismatch(value: Any, options: tuple) -> bool:
    # Literal[1] would otherwise accept True (True == 1).
    return isinstance(value, bool) and not any(isinstance(o, bool) for o in options)


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def _describe(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(ann))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(ann))
    if ann is type(None):
        return "null"
    if ann in (int, float, str, bool):
        return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[ann]
    if origin in (tuple, list) or ann in (tuple, list):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        return f"a list whose items are each {_describe(args[0])}" if len(args) == 1 else "a list"
    return getattr(ann, "__name__", str(ann))


def point_key(point: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit key of a point: a hash of its sorted JSON form."""
    text = json.dumps(point, sort_keys=True, default=_json_default, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    return repr(obj)


def load_yaml(source: str | Path | Mapping[str, Any], *, allow_list: bool = False) -> tuple[Any, str]:
    """Read a grid from a mapping, a YAML file path or YAML text; return it and its origin."""
    if isinstance(source, Mapping):
        return dict(source), "grid"
    import yaml

    text = str(Path(source)) if isinstance(source, PathLike) else str(source)
    looks_like_path = isinstance(source, PathLike) or (
        "\n" not in text and (text.strip().endswith((".yaml", ".yml", ".json")) or Path(text).is_file())
    )
    if looks_like_path:
        if not Path(source).is_file():
            raise ConfigError(f"Expected file {text!r} to exist")
        text, where = Path(source).read_text(), str(source)
    else:
        where = "YAML text"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"Cannot parse {where} as YAML: {err}") from err
    if data is None:
        data = {}
    if allow_list and isinstance(data, list):
        return data, where
    if not isinstance(data, Mapping):
        raise ConfigError(f"Expected {where} to hold a mapping with sections {', '.join(SECTIONS)}")
    return dict(data), where
