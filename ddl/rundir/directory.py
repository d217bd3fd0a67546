"""A run directory's lifecycle as training sees it: prepare it (or reopen it at a checkpoint), append the logs,
write checkpoints, the final models and ``summary.json``.  The Trainer asks this class; it never opens a run
file itself.  Writes happen on the main worker only; every worker may read (resume)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ddl.config import TrainConfig
from ddl.errors import ConfigError, DDLError, RunDirError
from ddl.rundir.checkpoint import list_checkpoints, load_latest, write_checkpoint
from ddl.rundir.layout import append_jsonl, read_config, read_jsonl, read_summary, save_torch, write_json

LOGS = ("metrics.jsonl", "noise.jsonl")  # appended during training, cut back to a checkpoint on resume
FINAL = ("summary.json", "checkpoints/averaged.pt", "checkpoints/learners.pt")  # written when a run ends


class RunDirectory:
    """The files of the run in ``path`` (the layout: :mod:`ddl.rundir.layout`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tensorboard = None  # a TensorBoardLog once open_tensorboard() is called

    def open_tensorboard(self) -> None:
        """Also write the logs as TensorBoard event files under ``tensorboard/`` (``--tensorboard``)."""
        from ddl.rundir.tensorboard import TensorBoardLog

        self.tensorboard = TensorBoardLog(self.path / "tensorboard")

    # ---- starting ----------------------------------------------------------------------------------
    def prepare(self, overwrite: bool) -> None:
        """Make the directory writable for a new run: refuse a run already there unless ``overwrite``; remove
        an overwritten run's logs, summary and checkpoints (they must not be resumed into this one)."""
        out = self.path
        if (out / "config.json").exists() and not overwrite:
            raise ConfigError(f"--out: {out} already holds a run (pass --overwrite to replace it)")
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"--out: cannot write the run directory {out} ({e.strerror or type(e).__name__})") \
                from None
        for stale in (*LOGS, "summary.json", "partition.json", "checkpoints"):
            p = out / stale
            if p.is_dir():
                for f in p.iterdir():
                    f.unlink()
            else:
                p.unlink(missing_ok=True)

    def write_config(self, config: dict[str, Any]) -> None:
        """``config.json``: the resolved configuration with where and on which graph the run goes."""
        write_json(self.path / "config.json", config)

    # ---- during training ---------------------------------------------------------------------------
    def write_partition(self, partition: dict[str, Any]) -> None:
        """``partition.json``: with non-IID data, every learner's shard size and class histogram."""
        write_json(self.path / "partition.json", partition)

    def append_metrics(self, record: dict) -> None:
        append_jsonl(self.path / "metrics.jsonl", record)
        if self.tensorboard is not None:
            self.tensorboard.metrics(record)

    def append_noise(self, record: dict) -> None:
        append_jsonl(self.path / "noise.jsonl", record)
        if self.tensorboard is not None:
            self.tensorboard.noise(record)

    def log_sizes(self) -> dict[str, int]:
        """Bytes in each log now (a checkpoint records them, so a resume cuts the logs back to it)."""
        return {name: (self.path / name).stat().st_size if (self.path / name).exists() else 0 for name in LOGS}

    def write_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        """A checksummed checkpoint of ``state`` at ``step``; a full disk is one error line saying what is left."""
        ck_dir = self.path / "checkpoints"
        try:
            write_checkpoint(ck_dir, step, state)
        except OSError as e:
            prev = list_checkpoints(ck_dir)
            kept = (f"the previous checkpoint {prev[0]} is intact: free space, then continue with "
                    f"`ddl train --out {self.path} --resume`") if prev else "no earlier checkpoint exists"
            raise DDLError(f"--out: cannot write a checkpoint to {ck_dir} ({e.strerror or e}); {kept}") from None

    # ---- the end -----------------------------------------------------------------------------------
    def write_final(self, averaged: dict, learners: dict, summary: dict) -> None:
        """The averaged model's state dict, every learner's weights, and ``summary.json`` (last: a run is
        finished when it has a summary)."""
        save_torch(self.path / "checkpoints" / "averaged.pt", averaged)
        save_torch(self.path / "checkpoints" / "learners.pt", learners)
        write_json(self.path / "summary.json", summary)
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None

    # ---- resuming ----------------------------------------------------------------------------------
    def holds_run(self) -> bool:
        """Whether a run has been started here (its ``config.json`` exists)."""
        return (self.path / "config.json").exists()

    def launch_id(self) -> str | None:
        """The torchrun launch that wrote this run (``world.launch_id`` of ``config.json``; None: none, or the
        file is unreadable)."""
        try:
            world = json.loads((self.path / "config.json").read_text()).get("world", {})
        except (OSError, ValueError, AttributeError):
            return None
        return world.get("launch_id") if isinstance(world, dict) else None

    def saved_config(self) -> TrainConfig:
        """The configuration of the run to resume; an error when there is none."""
        if not (self.path / "config.json").is_file():
            raise RunDirError(f"--resume: {self.path} holds no run to resume (no config.json); start it without "
                              "--resume")  # fmt: skip
        return read_config(self.path / "config.json")

    def latest_checkpoint(self, verbose: bool) -> tuple[Path, dict[str, Any]]:
        """The newest valid checkpoint (path, state)."""
        return load_latest(self.path / "checkpoints", verbose=verbose)

    def summary(self) -> dict[str, Any]:
        """``summary.json`` ({} when the run has none)."""
        return read_summary(self.path, "--resume") or {}

    def reopen(self, sizes: dict[str, int]) -> dict:
        """Cut the logs back to a checkpoint's ``sizes`` (no line lost or repeated) and drop the finished run's
        outputs; the last metrics record so far ({} when none)."""
        out = self.path
        for name, size in sizes.items():
            p = out / name
            have = p.stat().st_size if p.exists() else 0
            if have < size:
                raise RunDirError(f"--resume: {p} has {have} bytes, fewer than the {size} it had at the checkpoint")
            if have > size:
                with open(p, "r+b") as f:
                    f.truncate(size)
        for stale in FINAL:
            (out / stale).unlink(missing_ok=True)
        try:
            records = read_jsonl(out / "metrics.jsonl")
        except ValueError as e:
            raise RunDirError(f"--resume: {e}") from None
        return records[-1] if records else {}
