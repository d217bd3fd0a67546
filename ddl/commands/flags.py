"""Command-line flags generated from dataclass fields, so the CLI, config files and the Python API accept the
same names: ``batch_size`` is ``--batch-size``; the field's ``help`` and ``choices`` metadata become the flag's.
The field types are read by :func:`ddl.config.fieldtypes.field_types` (shared with config files and sweep
grids)."""

from __future__ import annotations

import argparse
import dataclasses
import typing

from ddl.config.fieldtypes import field_types, flag_name


def add_dataclass_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                        include: typing.Callable[[dataclasses.Field], bool] = lambda f: True,
                        taken: typing.Collection[str] = (), prefix: str = "") -> dict[str, str]:
    """Add one flag per field of ``cls`` (those ``include`` accepts); returns {field name: its dest}.

    Flags default to ``argparse.SUPPRESS``: only the flags a user gives appear in the namespace, so
    defaults stay in one place (the dataclass).  Booleans get ``--x/--no-x``; lists take several values.
    A field whose name is in ``taken`` (a dest the parser has already) gets ``prefix`` before its flag and
    dest (``prefix="analysis"``: ``--analysis-dtype`` → ``analysis_dtype``).
    """
    types = field_types(cls)
    added = {}
    for f in dataclasses.fields(cls):
        if not include(f):
            continue
        dest, flag = f.name, flag_name(f.name)
        if dest in taken:
            dest, flag = f"{prefix}_{f.name}", f"--{prefix}-{flag[2:]}"
        help_ = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kw: dict = {"dest": dest, "default": argparse.SUPPRESS, "help": f"{help_} (default: {default})"}
        ft = types[f.name]
        if ft.base is bool and not ft.is_list:
            kw["action"] = argparse.BooleanOptionalAction
        elif ft.is_list:
            kw.update(nargs="*", type=ft.base)
        else:
            kw["type"] = ft.base
            if ft.choices:
                kw["choices"] = ft.choices
        parser.add_argument(flag, **kw)
        added[f.name] = dest
    return added


def given(args: argparse.Namespace, names: typing.Iterable[str]) -> dict[str, typing.Any]:
    """The values of the flags among ``names`` that were given on the command line."""
    ns = vars(args)
    return {k: ns[k] for k in names if k in ns}
