"""The declaration of one configuration field: :class:`Param`, and :func:`param` to declare it.

Every configuration field of the package is declared once with :func:`param`: the sections
of :mod:`fairpriv_lab.experiment.config` (whose ``schema()`` gathers them) and the research
knobs of the clipping policies (:mod:`fairpriv_lab._core.knobs`, carried by
:class:`fairpriv_lab.engine.privacy.DPSGDS` / ``DPSGDF``). It lives here, below every layer,
so that the policies in ``engine`` and the schema in ``experiment`` read the same declaration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Any

from . import validate as V
from .vocabulary import DEVICE_HINT, DEVICE_PATTERN

__all__ = ["Param", "param", "positive_param", "params_of", "same_param"]


@dataclass(frozen=True)
class Param:
    """One configuration field, declared once: its kind, choices, bounds, default and help.

    The config sections validate with it, and the command line (``cli``), the panel (``ui``),
    the notebooks' parameter checks and the sweep grids read their options, bounds, defaults
    and help from it (:func:`schema`). ``kind`` is ``"int"``, ``"float"``, ``"choice"``,
    ``"choices"`` (a tuple of choices), ``"ints"`` (a tuple of integers), ``"bool"``, ``"str"``,
    ``"mapping"`` (JSON values) or ``"device"``.
    """

    default: Any
    help: str
    kind: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    even: bool = False
    even_hint: str = "Models come in complementary pairs (2p, 2p+1)"
    flag: str | None = None
    aliases: tuple[str, ...] = ()
    #: The interactive (classroom) default where it differs from ``default``: the panel's
    #: starting value, chosen so that a run takes seconds on 2 CPU cores and its intervals
    #: resolve the effects the notebooks teach (``benchmarks/bench_widgets.py``). ``"__same__"``
    #: means the library default.
    classroom: Any = "__same__"
    #: Classroom defaults of particular datasets, ``((dataset, value), ...)``, where the
    #: panel's default (``classroom``, chosen for the default dataset) would not show the
    #: lesson on that dataset (e.g. ``synthetic`` generates more records so that its small
    #: group's interval is as narrow); read by ``experiment.config.classroom_default_of``.
    classroom_for: tuple[tuple[str, Any], ...] = ()

    def check(self, name: str, value: Any, *, high: float | None = None) -> Any:
        """Return ``value`` validated (ints as int, floats as float); ConfigError naming ``name``.

        ``high`` overrides the declared upper bound where the context knows a tighter one
        (a notebook's ``m`` is at most its ``n``).
        """
        if value is None and self.optional:
            return None
        high = self.high if high is None else high
        if self.kind == "choice":
            return V.choice(name, value, self.choices or ())
        if self.kind in ("choices", "ints") and not isinstance(value, str | list | tuple):
            raise V.fail(name, value, "to name one or more of " + ", ".join(self.choices or ())
                         if self.kind == "choices" else "to be a list of integers")
        if self.kind == "int":
            v = V.integer(name, value, None if self.low is None else int(self.low),
                          None if high is None else int(high))
            if self.even and v % 2:
                raise V.fail(name, v, "to be even", self.even_hint)
            return v
        if self.kind == "float":
            return V.number(name, value, -math.inf if self.low is None else self.low,
                            math.inf if high is None else high,
                            low_open=self.low_open, high_open=self.high_open)
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise V.fail(name, value, "to be True or False")
            return value
        if self.kind == "device":
            if not isinstance(value, str) or not re.match(DEVICE_PATTERN, value):
                raise V.fail(name, value, DEVICE_HINT)
            return value
        return value


def param(default: Any, help: str, kind: str, **spec: Any) -> Any:
    """Declare a config field and its :class:`Param` in one line (a ``dataclasses.field``)."""
    return field(default=default, metadata={"param": Param(default, help, kind, **spec)})


def positive_param(default: Any, help: str, **spec: Any) -> Any:
    """Declare a float field that must be finite and > 0."""
    return param(default, help, "float", low=0.0, high=math.inf, low_open=True, high_open=True, **spec)


def params_of(cls: type) -> dict[str, Param]:
    """Return the :class:`Param` of every declared field of a dataclass, by field name."""
    return {f.name: f.metadata["param"] for f in fields(cls) if "param" in f.metadata}


def same_param(cls: type, name: str) -> Any:
    """Declare a field with the declaration of ``cls``'s field ``name`` (the same :class:`Param`).

    The one declaration is ``cls``'s; a second dataclass that exposes the same field (the
    training section exposes the policies' knobs) reads it from there.
    """
    p = params_of(cls)[name]
    return field(default=p.default, metadata={"param": p})
