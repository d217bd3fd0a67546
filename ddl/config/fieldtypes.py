"""What a dataclass field's type annotation says, read once: the one place that introspects field types.

Three readers share it: the command-line flags generated from a dataclass (:mod:`ddl.commands.flags`: flag type,
``nargs``, ``--x/--no-x``), the checks of values from a config file or the Python API
(:meth:`FieldType.check`), and the sweep's grid values given as text (:meth:`FieldType.parse`).  A new config
field therefore works as a flag, in a config file and in ``ddl sweep --grid`` with no further code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass
from typing import Any

from ddl.errors import ConfigError

_ARTICLE = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURAL = {int: "integers", float: "numbers", str: "strings"}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def flag_name(name: str) -> str:
    """``batch_size`` → ``--batch-size``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class FieldType:
    """A field's type: ``base`` (``int``, ``float``, ``str``, ``bool``; the element type of a list), whether it
    is a list, whether it may be None (``X | None``), and its allowed ``choices`` (field metadata)."""

    name: str
    base: type
    is_list: bool = False
    optional: bool = False
    choices: tuple | None = None

    def check(self, v: Any) -> Any:
        """A value from a config file or the Python API as this type (an int where a float is expected becomes a
        float), or a one-line :class:`ConfigError` naming the flag.  (The CLI's flags are typed already.)"""
        if v is None and self.optional:
            return None
        if self.is_list:
            if not isinstance(v, (list, tuple)):
                raise ConfigError(f"{flag_name(self.name)}: expected a list of "
                                  f"{_PLURAL.get(self.base, self.base)}, got {v!r}")  # fmt: skip
            return [self._check_scalar(x) for x in v]
        return self._check_scalar(v)

    def _check_scalar(self, v: Any) -> Any:
        flag, hint = flag_name(self.name), self.base
        if hint is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{flag}: expected a number, got {v!r}")
            v = float(v)
            if not math.isfinite(v):
                raise ConfigError(f"{flag}: must be a finite number, got {v}")
            return v
        if hint is int:
            if isinstance(v, float) and v.is_integer():
                return int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"{flag}: expected an integer, got {v!r}")
            return v
        if hint in (str, bool) and not isinstance(v, hint):
            raise ConfigError(f"{flag}: expected {_ARTICLE.get(hint, str(hint))}, got {v!r}")
        return v

    def parse(self, v: Any, where: str) -> Any:
        """A value given as text (a command line) or loosely typed (YAML) as this type; errors start with
        ``where`` (e.g. ``--grid lr``).  A list takes ``:``-separated elements in text (``30:30``)."""
        if self.is_list:
            if v is None and self.optional:
                return None
            if isinstance(v, str):
                v = [p for p in v.split(":") if p.strip()] if v.strip() else []
            elif not isinstance(v, (list, tuple)):
                v = [v]
            return [self._parse_scalar(e, False, where) for e in v]
        if self.choices and isinstance(v, str) and v.strip() in self.choices:  # a choice named "none" is text
            return v.strip()
        value = self._parse_scalar(v, self.optional, where)
        if self.choices and value not in self.choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, self.choices))}")
        return value

    def _parse_scalar(self, v: Any, optional: bool, where: str) -> Any:
        if v is None or (isinstance(v, str) and v.strip().lower() in ("none", "null")):
            if optional:
                return None
            raise ConfigError(f"{where}: None is not allowed")
        typ = self.base
        try:
            if typ is bool:
                if isinstance(v, bool):
                    return v
                s = str(v).strip().lower()
                if s in _TRUE or s in _FALSE:
                    return s in _TRUE
                raise ValueError
            if typ is int:
                if isinstance(v, float) and not v.is_integer() or isinstance(v, bool):
                    raise ValueError
                return int(v) if not isinstance(v, str) else int(v.strip())
            if typ is float:
                if isinstance(v, bool):
                    raise ValueError
                return float(v)
            return str(v).strip()
        except ValueError:
            raise ConfigError(f"{where}: {v!r} is not a valid {typ.__name__}") from None


@functools.cache
def field_types(cls: type) -> dict[str, FieldType]:
    """Every field of dataclass ``cls`` by name: its :class:`FieldType` (``X | None`` unwrapped, ``list[X]``
    read as a list of X)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        typ = next(a for a in args if a is not type(None)) if optional else hint
        is_list = typing.get_origin(typ) is list
        base = typing.get_args(typ)[0] if is_list else typ
        choices = f.metadata.get("choices")
        out[f.name] = FieldType(f.name, base, is_list, optional, tuple(choices) if choices else None)
    return out
