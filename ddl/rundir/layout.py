"""The run directory: the contract between training, analysis and reports.

Layout::

    RUN/
      config.json            resolved TrainConfig (+ "ddl_version", "world" for distributed runs, and "mixing":
                             DPSGD's graph as run — grid, period, degree, spectral gap; null for SSGD)
      metrics.jsonl          one JSON object per evaluation (step, epoch, lr, train/test loss & acc,
                             consensus distance, wall time, …)
      noise.jsonl            with --measure-noise K: SSGD/DPSGD noise, sharpness, projections (analysis.noise)
      partition.json         with --partition dirichlet: {"partition", "alpha", "min_size", "classes",
                             "shard_sizes": [n], "histograms": [n][classes]} (per-learner class counts)
      summary.json           status ("converged", "max_epochs", "diverged"), steps, final metrics, spectral_gap
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from analysis.io import atomic_write, plain, read_jsonl
from ddl.config import TrainConfig, resume_conflict
from ddl.errors import ConfigError, RunDirError

__all__ = ["Run", "RunDirError", "append_jsonl", "atomic_write", "load_run", "read_config", "read_partition",
           "resume_config", "save_torch", "write_json"]


def write_json(path: Path, obj: Any) -> None:
    """Run files keep non-finite numbers (a diverged loss is ``NaN``, read back as such)."""
    text = json.dumps(plain(obj, nonfinite_as_null=False), indent=2)
    atomic_write(path, lambda f: f.write(text.encode()))


def save_torch(path: Path, obj: Any) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(plain(obj, nonfinite_as_null=False)) + "\n")


def read_config(path: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` of a run's ``config.json`` (its extra keys, ``ddl_version``, ``world`` and
    ``mixing``, describe where and on which graph it ran)."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"RUN_DIR: {p} is unreadable or not JSON ({type(e).__name__})") from None
    if not isinstance(raw, dict):
        raise RunDirError(f"RUN_DIR: {p} does not hold a configuration mapping")
    try:
        return TrainConfig.from_dict({k: v for k, v in raw.items() if k not in ("ddl_version", "world", "mixing")})
    except (ConfigError, TypeError) as e:
        raise RunDirError(f"RUN_DIR: {p}: {e}") from None


def resume_config(given: dict[str, Any]) -> TrainConfig:
    """The configuration of ``ddl train --out DIR --resume``: the run's saved config, with the ``given`` flag
    values (explicit flags and ``--config`` keys) applied where their role allows a change on resume.

    A given value for any other field must equal the saved one; otherwise one :class:`ConfigError` line names
    its flag.  Nothing is written.
    """
    out = given.get("out")
    if not out:
        raise ConfigError("--resume: needs --out DIR, the run directory to continue")
    p = Path(out) / "config.json"
    if not p.is_file():
        raise RunDirError(f"--resume: {out} holds no run to resume (no config.json); start it without --resume")
    saved = read_config(p)
    cfg = TrainConfig.from_dict({**saved.to_dict(), **given, "resume": True}).validate()
    why = resume_conflict(saved, cfg)
    if why:
        raise ConfigError(why)
    return cfg


@dataclass
class Run:
    """A finished (or stopped) run, read back from its directory."""

    path: Path
    config: TrainConfig
    summary: dict

    def _records(self, name: str) -> list[dict]:
        try:
            return read_jsonl(self.path / name)
        except ValueError as e:
            raise RunDirError(f"RUN_DIR: {e}") from None

    def metrics(self) -> list[dict]:
        return self._records("metrics.jsonl")

    def noise(self) -> list[dict]:
        return self._records("noise.jsonl")

    def partition(self) -> dict | None:
        """The learners' shards (``partition.json``); None for a run on IID data."""
        return read_partition(self.path)

    def dataset(self):
        """The exact data split, subset and label noise the run trained on."""
        from ddl.data import load_dataset

        c = self.config
        return load_dataset(c.dataset, c.data_dir, c.train_per_class, c.test_per_class, c.label_noise, c.seed)

    def model(self, map_location: str = "cpu", num_classes: int | None = None) -> torch.nn.Module:
        """The averaged model w̄ in eval mode, in the run's dtype, on ``map_location``.

        ``num_classes`` defaults to the run's data set (loaded when not given).
        """
        from ddl.data import INPUT_SHAPES
        from ddl.models import build_model

        c = self.config
        if num_classes is None:
            num_classes = self.dataset().num_classes
        model = build_model(c.model, INPUT_SHAPES[c.dataset], num_classes, hidden=tuple(c.hidden), bias=c.bias,
                            dropout=c.dropout, init=c.init, width=c.width)
        if c.dtype == "float64":
            model = model.double()
        model.load_state_dict(self._load("averaged.pt", map_location))
        return model.eval()

    def learners(self, map_location: str = "cpu") -> dict:
        return self._load("learners.pt", map_location)

    def _load(self, name: str, map_location: str):
        p = self.path / "checkpoints" / name
        try:
            return torch.load(p, map_location=map_location)
        except Exception as e:  # a truncated or corrupted file: torch raises several types
            raise RunDirError(f"RUN_DIR: {p} is corrupt or unreadable ({type(e).__name__})") from None


def load_run(path: str | Path, require_checkpoint: bool = True) -> Run:
    """The run in directory ``path``, checked: its config, its summary and the checksums of its resumable
    checkpoints (:class:`RunDirError`, one line, when any is corrupt).  Without ``require_checkpoint``, also one
    that has not written its final averaged model yet (its metrics and summary are still worth reading)."""
    from ddl.rundir.checkpoint import CorruptCheckpoint, list_checkpoints, verify_checkpoint

    p = Path(path)
    if not (p / "config.json").is_file():
        raise RunDirError(f"RUN_DIR: {p} has no config.json (not a ddl run directory)")
    if require_checkpoint and not (p / "checkpoints" / "averaged.pt").is_file():
        raise RunDirError(f"RUN_DIR: {p} has no checkpoints/averaged.pt (run unfinished?)")
    cfg = read_config(p / "config.json")
    for ck in list_checkpoints(p / "checkpoints"):
        try:
            verify_checkpoint(ck)
        except CorruptCheckpoint as e:
            raise RunDirError(f"RUN_DIR: {e}") from None
    return Run(p, cfg, read_summary(p) or {})


def read_partition(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's ``partition.json`` (the one reader of it); None for a run on IID data (it has none)."""
    path = Path(run_dir) / "partition.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise RunDirError(f"RUN_DIR: {path} is corrupt") from None


def read_summary(run_dir: str | Path, flag: str = "RUN_DIR") -> dict[str, Any] | None:
    """A run's ``summary.json`` (the one reader of it); None when the run has none (unfinished), a
    :class:`RunDirError` naming ``flag`` when it is unreadable."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise RunDirError(f"{flag}: {path} is corrupt") from None
    if not isinstance(summary, dict):
        raise RunDirError(f"{flag}: {path} is corrupt")
    return summary
