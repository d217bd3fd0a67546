"""Command-line flags generated from dataclass fields, so the CLI, config files and the Python API accept the
same names: ``batch_size`` is ``--batch-size``; the field's ``help`` and ``choices`` metadata become the flag's."""

from __future__ import annotations

import argparse
import dataclasses
import typing


def add_dataclass_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                        include: typing.Callable[[dataclasses.Field], bool] = lambda f: True) -> list[str]:
    """Add one flag per field of ``cls`` (those ``include`` accepts); returns the field names added.

    Flags default to ``argparse.SUPPRESS``: only the flags a user gives appear in the namespace, so
    defaults stay in one place (the dataclass).  Booleans get ``--x/--no-x``; lists take several values.
    """
    hints = typing.get_type_hints(cls)
    added = []
    for f in dataclasses.fields(cls):
        if not include(f):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw: dict = {"dest": f.name, "default": argparse.SUPPRESS, "help": f"{help_} (default: {default})"}
        hint = hints[f.name]
        args = typing.get_args(hint)  # only an Optional is unwrapped: list[int] stays a list
        typ = next(a for a in args if a is not type(None)) if type(None) in args else hint
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(typ) is list:
            kw.update(nargs="*", type=typing.get_args(typ)[0])
        else:
            kw["type"] = typ
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
        parser.add_argument(flag, **kw)
        added.append(f.name)
    return added


def given(args: argparse.Namespace, names: typing.Iterable[str]) -> dict[str, typing.Any]:
    """The values of the flags among ``names`` that were given on the command line."""
    ns = vars(args)
    return {k: ns[k] for k in names if k in ns}
