"""The run directory: the contract between training, analysis and reports.

Layout::

    RUN/
      config.json            resolved TrainConfig (+ "ddl_version", "world" for distributed runs)
      metrics.jsonl          one JSON object per evaluation (step, epoch, lr, train/test loss & acc,
                             consensus distance, wall time, …)
      noise.jsonl            with --measure-noise K: SSGD/DPSGD noise, sharpness, projections (analysis.noise)
      summary.json           status ("converged", "max_epochs", "diverged"), steps, final metrics
      checkpoints/
        averaged.pt          state_dict of the averaged model w̄ (BatchNorm buffers averaged)
        learners.pt          {"weights": [n, P] flat learner weights, "buffers": {name: [n, ...]},
                              "param_names": [...], "momentum": [n, P] or None}
      analysis/              written by `ddl analyze` (duality.npz, duality.json, *.png)

Analysis and reports read only this directory: :func:`load_run` rebuilds the exact model and data split from
``config.json``.  Files are written atomically (temp file + rename).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ddl.config import TrainConfig


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, default=_jsonable).encode()))


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_jsonable) + "\n")


def _jsonable(o):
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def atomic_write(path: Path, write) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunDirError(ValueError):
    """Not a usable run directory (one line saying what is missing)."""


@dataclass
class Run:
    """A finished (or stopped) run, read back from its directory."""

    path: Path
    config: TrainConfig
    summary: dict

    def metrics(self) -> list[dict]:
        p = self.path / "metrics.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []

    def noise(self) -> list[dict]:
        p = self.path / "noise.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []

    def dataset(self):
        """The exact data split, subset and label noise the run trained on."""
        from ddl.data import load_dataset

        c = self.config
        return load_dataset(c.dataset, c.data_dir, c.train_per_class, c.test_per_class, c.label_noise, c.seed)

    def model(self, map_location: str = "cpu") -> torch.nn.Module:
        """The averaged model w̄ in eval mode, float32 or the run's dtype, on ``map_location``."""
        from ddl.data import INPUT_SHAPES
        from ddl.models import build_model

        c = self.config
        model = build_model(
            c.model, INPUT_SHAPES[c.dataset], 10, hidden=tuple(c.hidden), bias=c.bias, dropout=c.dropout, init=c.init
        )
        if c.dtype == "float64":
            model = model.double()
        state = torch.load(self.path / "checkpoints" / "averaged.pt", map_location=map_location)
        model.load_state_dict(state)
        return model.eval()

    def learners(self, map_location: str = "cpu") -> dict:
        return torch.load(self.path / "checkpoints" / "learners.pt", map_location=map_location)


def load_run(path: str | Path) -> Run:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise RunDirError(f"RUN_DIR: {p} has no config.json (not a ddl run directory)")
    if not (p / "checkpoints" / "averaged.pt").is_file():
        raise RunDirError(f"RUN_DIR: {p} has no checkpoints/averaged.pt (run unfinished?)")
    raw = json.loads((p / "config.json").read_text())
    cfg = TrainConfig.from_dict({k: v for k, v in raw.items() if k not in ("ddl_version", "world")})
    summary = json.loads((p / "summary.json").read_text()) if (p / "summary.json").exists() else {}
    return Run(p, cfg, summary)
