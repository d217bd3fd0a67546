"""Files: one atomic writer and one JSON-safe converter, shared by the analysis results and (through ``ddl``) by
run directories and reports."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``.

    A reader sees the old file or the new one, never a half-written one; a failed write (full disk, an
    exception) leaves the old file in place and no temporary file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plain(o: Any, nonfinite_as_null: bool = True) -> Any:
    """``o`` with numpy/torch scalars and arrays, tuples and paths turned into JSON types.

    Non-finite floats become ``None`` (strict JSON, readable by browsers) unless ``nonfinite_as_null`` is False,
    in which case they stay floats (Python's json writes them as ``NaN``/``Infinity`` and reads them back).
    """
    if isinstance(o, dict):
        return {str(k): plain(v, nonfinite_as_null) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v, nonfinite_as_null) for v in o]
    if isinstance(o, (bool, np.bool_)):
        return bool(o)
    if isinstance(o, (int, np.integer)):
        return int(o)
    if isinstance(o, (float, np.floating)):
        o = float(o)
        return None if nonfinite_as_null and not math.isfinite(o) else o
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "tolist"):  # numpy arrays, torch tensors
        return plain(o.tolist(), nonfinite_as_null)
    if hasattr(o, "item"):
        return plain(o.item(), nonfinite_as_null)
    return o


def write_json(path: str | Path, obj: Any, nonfinite_as_null: bool = True) -> None:
    """``obj`` as indented JSON at ``path``, atomically."""
    text = json.dumps(plain(obj, nonfinite_as_null), indent=2)
    atomic_write(path, lambda f: f.write(text.encode()))


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file ([] when it does not exist).

    A last line cut short (a writer killed mid-line) is dropped; a bad line anywhere else raises ValueError.
    """
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ValueError(f"{p}: line {i + 1} is not a JSON record") from None
    return out
