"""Grid values: a sweep's ``KEY=V1,V2`` items and spec grids, typed as the config fields they set, and how a value
is written in run names and tables.  Types come from :func:`ddl.config.fieldtypes.field_types`, so every
config field of a grid role works in ``--grid`` as soon as it exists."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from ddl.config import TrainConfig, fields_by_role
from ddl.config.fieldtypes import field_types
from ddl.errors import ConfigError

GRID_ROLES = ("algorithm", "model", "data", "stopping", "measure")


def grid_key(key: str) -> str:
    """A grid key (``lr``, ``--batch-size``) as the config field it sets; an error for anything else."""
    name = key.strip().lstrip("-").replace("-", "_")
    if name == "seed":
        raise ConfigError("--grid seed: give seeds with --seeds S1 S2 … (or 'seeds:' in the spec)")
    allowed = fields_by_role(*GRID_ROLES)
    if name not in allowed:
        if name in {f.name for f in dataclasses.fields(TrainConfig)}:
            raise ConfigError(f"--grid {name}: an execution setting, not a parameter of the runs")
        raise ConfigError(f"--grid {name}: not a train flag (e.g. lr, batch_size, algo, learners, weight_decay)")
    return name


def coerce_value(key: str, v: Any) -> Any:
    """``v`` (a string from the command line or a value from YAML) as the type of config field ``key``.

    List fields (``hidden``, ``lr_milestones``) take ``:``-separated elements on the command line (``30:30``).
    """
    return field_types(TrainConfig)[key].parse(v, f"--grid {key}")


def parse_grid_item(item: str) -> tuple[str, list]:
    """``"KEY=V1,V2,…"`` → (field name, typed values)."""
    if "=" not in item:
        raise ConfigError(f"--grid: {item!r} is not KEY=V1,V2,…")
    key, _, values = item.partition("=")
    name = grid_key(key)
    parts = [p for p in values.split(",")]
    if not values.strip() or any(not p.strip() for p in parts):
        raise ConfigError(f"--grid {name}: empty value in {values!r}")
    return name, unique_values(name, [coerce_value(name, p) for p in parts])


def unique_values(name: str, values: list) -> list:
    """``values`` unchanged, or an error naming a value given twice."""
    seen = []
    for v in values:
        if v in seen:
            raise ConfigError(f"--grid {name}: {v!r} given twice")
        seen.append(v)
    return seen


def normalize_grid(grid: Any) -> dict[str, list]:
    """A spec's ``grid`` (a mapping of field → values, or a list of ``KEY=V1,V2`` items) with typed values."""
    if grid is None:
        return {}
    if isinstance(grid, list):  # ["lr=0.1,0.2", …]
        return dict(parse_grid_item(str(g)) for g in grid)
    if not isinstance(grid, dict):
        raise ConfigError("grid: must map train flags to lists of values")
    types = field_types(TrainConfig)
    out = {}
    for k, vs in grid.items():
        name = grid_key(str(k))
        # one value may be given bare; a list field's one value is itself a list
        if not isinstance(vs, list) or (types[name].is_list and vs and not isinstance(vs[0], list)):
            vs = [vs]
        if not vs:
            raise ConfigError(f"grid {name}: no values")
        out[name] = unique_values(name, [coerce_value(name, v) for v in vs])
    return out


def fmt_value(v: Any) -> str:
    """A grid value as it appears in run names and tables: ``0.1``, ``1e-05``, ``none``, ``30:30``, ``true``."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ":".join(fmt_value(e) for e in v)
    if isinstance(v, float):
        return repr(v)
    return str(v).replace("/", "_").replace(os.sep, "_")
