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
import itertools
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from .._core.exceptions import ConfigError, FairPrivError
from ..experiment.config import lookup_key

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
        resolved, owners = lookup_key(key, list(self.fields), self.aliases)
        if resolved is not None:
            return resolved
        if owners:
            raise ConfigError(f"Key {key!r} in {where} is ambiguous; write one of {', '.join(owners)}")
        raise ConfigError(f"Unknown key {key!r} in {where}; valid keys are: {', '.join(self.fields)}{self._hints()}")

    def _hints(self) -> str:
        leaves = [k.rsplit(".", 1)[-1] for k in self.fields]
        short = next((k for k, leaf in zip(self.fields, leaves) if "." in k and leaves.count(leaf) == 1), None)
        hints = [f"a unique last part such as {short.rsplit('.', 1)[-1]!r} for {short!r}"] if short else []
        hints += [f"{alias!r} for {target!r}" for alias, target in self.aliases.items() if target in self.fields]
        return f" (or {', '.join(hints)})" if hints else ""


def schema_of(cls: type) -> Schema:
    """The Schema of a (possibly nested) config dataclass; aliases from ``cls.KEY_ALIASES``."""
    aliases = getattr(cls, "KEY_ALIASES", None) or {}
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
    return point_digest(point)[:16]


def point_digest(point: Mapping[str, Any]) -> str:
    """sha256 of the point's settings (sorted JSON); :func:`point_key` is its first 16 digits."""
    text = json.dumps(point, sort_keys=True, default=_json_default, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    return repr(obj)


#: Largest grid or parameter file read (bytes), and most nodes its YAML may expand to once
#: aliases (``*name``) are resolved: a 3 kB "billion laughs" file expands to 10^9 nodes.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_NODES = 100_000


def safe_load_bounded(text: str, where: str = "YAML text") -> Any:
    """``yaml.safe_load`` that refuses documents expanding past :data:`MAX_YAML_NODES` nodes.

    The document is composed first (aliases stay shared there, so this is linear in the
    text), its expanded size counted with memoisation (a recursive alias counts as
    unbounded), and only then constructed.
    """
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_nodes(node)
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{where} expands to more than {MAX_YAML_NODES} values once its aliases (*name) are "
                "resolved; write the values out or use fewer nested aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_nodes(root: Any) -> int:
    import yaml

    sizes: dict[int, int] = {}
    active: set[int] = set()

    def count(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:  # a recursive alias: unbounded
            return MAX_YAML_NODES + 1
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += count(child)
            if total > MAX_YAML_NODES:
                break
        active.discard(key)
        sizes[key] = min(total, MAX_YAML_NODES + 1)
        return sizes[key]

    try:
        return count(root)
    except RecursionError:
        return MAX_YAML_NODES + 1


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
        size = Path(source).stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"Expected file {text!r} to be at most {MAX_YAML_BYTES} bytes (it has {size}); "
                              "a grid or parameter file is a few kB")
        text, where = Path(source).read_text(), str(source)
    else:
        where = "YAML text"
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"Expected {where} to be at most {MAX_YAML_BYTES} characters (it has {len(text)})")
    try:
        data = safe_load_bounded(text, where)
    except yaml.YAMLError as err:
        raise ConfigError(f"Cannot parse {where} as YAML: {err}") from err
    if data is None:
        data = {}
    if allow_list and isinstance(data, list):
        return data, where
    if not isinstance(data, Mapping):
        raise ConfigError(f"Expected {where} to hold a mapping with sections {', '.join(SECTIONS)}")
    return dict(data), where


@dataclass(frozen=True)
class Grid:
    """A validated grid of points: ``base`` settings, the product of ``axes``, plus ``extra``.

    Points are ``base | combination`` for every combination of the axes' values (the first
    axis varies slowest), then ``base | e`` for every explicit extra point; a point equal to
    an earlier one is dropped. Keys are the config's fields, nested ones dotted
    (``training.epochs``).

    Build it with :meth:`from_yaml` (file path, YAML text or a mapping), which validates every
    key and value before anything runs.

    Examples
    --------
    >>> g = Grid.from_yaml({"base": {"n": 2}, "grid": {"a": [1, 2], "b": ["x"]},
    ...                     "points": [{"a": 9}]}, config_class=None)
    >>> g.points()
    [{'n': 2, 'a': 1, 'b': 'x'}, {'n': 2, 'a': 2, 'b': 'x'}, {'n': 2, 'a': 9}]
    """

    base: Mapping[str, Any] = field(default_factory=dict)
    axes: Mapping[str, tuple] = field(default_factory=dict)
    extra: tuple[Mapping[str, Any], ...] = ()

    def points(self) -> list[dict[str, Any]]:
        """Every point in order: the product of the axes, then the extra points, deduplicated."""
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        names = list(self.axes)
        combos = itertools.product(*(self.axes[k] for k in names)) if names else iter(())
        candidates = [dict(self.base, **dict(zip(names, c))) for c in combos]
        candidates += [dict(self.base, **e) for e in self.extra]
        for point in candidates:
            key = point_key(point)
            if key not in seen:
                seen.add(key)
                out.append(point)
        return out

    def __len__(self) -> int:
        return len(self.points())

    @classmethod
    def from_yaml(
        cls,
        source: str | os.PathLike | Mapping[str, Any],
        *,
        config_class: type | None | Literal["experiment"] = "experiment",
    ) -> Grid:
        """Read and validate a grid from a YAML file, YAML text or a mapping.

        Parameters
        ----------
        source : str, path or mapping
            A ``.yaml``/``.yml`` file, YAML text, or the parsed mapping, with sections
            ``base`` (fixed settings), ``grid`` (lists whose product is taken) and ``points``
            (a list of explicit extra points).
        config_class : dataclass type, None or "experiment"
            The config whose fields are the valid keys and whose annotations give the types;
            ``"experiment"`` is :class:`fairpriv_lab.experiment.ExperimentConfig`. Each point
            is also built with ``config_class.from_dict`` when it has one, so that values the
            config rejects fail here, naming the point. None accepts any key.

        Raises
        ------
        ConfigError
            Unknown sections or keys (the valid ones listed), empty or non-list grid axes,
            values of the wrong type (naming the key), or a point the config rejects.
        """
        data, where = load_yaml(source)
        klass = _config_class(config_class)
        schema = schema_of(klass) if klass is not None else None
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ConfigError(
                f"Unknown section(s) {', '.join(sorted(map(str, unknown)))} in {where}; "
                f"valid sections are: {', '.join(SECTIONS)}"
            )
        base = _section_mapping(data.get("base"), "base", where)
        base = _checked(flatten(base, schema, f"{where}: base"), schema, f"{where}: base")
        axes_in = _section_mapping(data.get("grid"), "grid", where)
        axes: dict[str, tuple] = {}
        for name, values in flatten(axes_in, schema, f"{where}: grid").items():
            key = canonical_key(name, schema, f"{where}: grid")
            if key in axes:
                raise ConfigError(f"Key {key!r} is given twice in the grid of {where}")
            if not isinstance(values, list):
                raise ConfigError(
                    f"Expected grid.{key}={values!r} in {where} to be a list of values "
                    f"(write [{values!r}] for one value, or move it to base)"
                )
            if not values:
                raise ConfigError(f"Expected grid.{key} in {where} to be a non-empty list")
            if key in base:
                raise ConfigError(f"Key {key!r} is in both base and grid of {where}; keep one")
            ann = schema[key] if schema is not None else _ANY
            axes[key] = tuple(coerce(key, v, ann, f"{where}: grid") for v in values)
        raw_points = data.get("points") or []
        if not isinstance(raw_points, list):
            raise ConfigError(f"Expected points in {where} to be a list of mappings")
        extra = []
        for i, p in enumerate(raw_points):
            if not isinstance(p, Mapping):
                raise ConfigError(f"Expected points[{i}]={p!r} in {where} to be a mapping")
            w = f"{where}: points[{i}]"
            extra.append(_checked(flatten(p, schema, w), schema, w))
        if not axes and not extra:
            raise ConfigError(f"{where} defines no points: give a 'grid' section, 'points', or both")
        grid = cls(base=base, axes=axes, extra=tuple(extra))
        if klass is not None:
            for i, point in enumerate(grid.points()):
                try:
                    build_config(klass, point)
                except (FairPrivError, TypeError) as err:
                    raise ConfigError(f"Point {i} {point} of {where} is not a valid config: {err}") from err
        return grid

    def to_dict(self) -> dict[str, Any]:
        """Return the grid as a mapping of the YAML sections (lists, not tuples)."""
        return {
            "base": dict(self.base),
            "grid": {k: list(v) for k, v in self.axes.items()},
            "points": [dict(p) for p in self.extra],
        }


def build_config(klass: type, point: Mapping[str, Any]) -> Any:
    """Build the config of a point: ``klass().replace(**point)``, else ``from_dict``."""
    if hasattr(klass, "replace"):
        return klass().replace(**point)
    if hasattr(klass, "from_dict"):
        return klass.from_dict(unflatten(point))
    return klass(**unflatten(point))


def _config_class(config_class: Any) -> type | None:
    if config_class != "experiment":
        return config_class
    try:
        from ..experiment.runner import ExperimentConfig
    except ImportError as err:  # pragma: no cover - only before the experiment module exists
        raise ConfigError(
            "The experiment module is not available; pass config_class=None to accept any key"
        ) from err
    return ExperimentConfig


def _section_mapping(value: Any, name: str, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"Expected section {name} in {where} to be a mapping of key: value")
    return dict(value)


def _checked(mapping: dict[str, Any], schema: Schema | None, where: str) -> dict:
    out: dict[str, Any] = {}
    for name, value in mapping.items():
        key = canonical_key(name, schema, where)
        if key in out:
            raise ConfigError(f"Key {key!r} is given twice in {where}")
        out[key] = coerce(key, value, schema[key] if schema is not None else _ANY, where)
    return out
