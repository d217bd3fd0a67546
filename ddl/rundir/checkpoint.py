"""Resumable checkpoints: the complete training state, checksummed, written atomically, the last two kept.

A checkpoint is ``RUN/checkpoints/state-<step>.pt``: one header line
``DDLCKPT1 <sha256 of the payload> <payload bytes>\\n`` followed by the payload, a ``torch.save`` of::

    {"format": 1, "step": int, "config": {...resolved TrainConfig...}, "world": K,
     "weights": [n, P], "buffers": {name: [n, ...]}, "momentum": [n, P] or None,   # every learner's rows
     "algorithm_rows": {name: [n, ...]},  # an algorithm's own per-learner state (tracker y, CHOCO's copies ŵ)
     "rng_cpu": [K, S] uint8, "rng_cuda": [K, S'] uint8 or None,                    # every worker's RNG
     "loop": [K, 3] float64,     # every worker's (first non-finite step or −1, loss sum, loss count) since the
                                 # last evaluation: the stop rule's and the minibatch-loss log's state
     "elapsed": float,           # wall time so far (the ``time`` of metrics records continues from it)
     "files": {"metrics.jsonl": int, "noise.jsonl": int},   # sizes in bytes of the logs at this step
     "extra": {...}}             # state of optional parts (the noise meter's Lanczos warm start)

Distributed runs gather every worker's rows and RNG states to the main worker, which alone writes; on resume
every worker reads the same file (the run directory is on a filesystem all workers see, as for writing) and
takes its own rows.  The minibatch and augmentation streams and the learning-rate schedule are pure functions
of (seed, step, learner), so ``step`` is their whole state; the torch RNG (dropout) is the only real one.

Writing is temp file + fsync + rename (:func:`analysis.io.atomic_write`): a crash or a full disk leaves the
previous checkpoint in place.  Reading checks length and checksum before unpickling anything.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
from pathlib import Path
from typing import Any

import torch

from analysis.io import atomic_write
from ddl.errors import RunDirError

MAGIC = b"DDLCKPT1"
KEEP = 2
_NAME = re.compile(r"^state-(\d+)\.pt$")

__all__ = ["CorruptCheckpoint", "KEEP", "list_checkpoints", "load_latest", "read_checkpoint", "verify_checkpoint",
           "write_checkpoint"]


class CorruptCheckpoint(RunDirError):
    """A checkpoint whose length or checksum does not match its header (truncated or altered)."""


def checkpoint_path(ck_dir: Path, step: int) -> Path:
    return Path(ck_dir) / f"state-{step:09d}.pt"


def list_checkpoints(ck_dir: str | Path) -> list[Path]:
    """The checkpoint files in ``ck_dir``, newest (highest step) first."""
    d = Path(ck_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def step_of(path: Path) -> int:
    m = _NAME.match(Path(path).name)
    if m is None:
        raise ValueError(f"{path} is not a checkpoint file name")
    return int(m.group(1))


def write_checkpoint(ck_dir: str | Path, step: int, state: dict[str, Any], keep: int = KEEP) -> Path:
    """Write ``state`` as the checkpoint of ``step`` and delete all but the newest ``keep`` checkpoints.

    The older checkpoints are deleted only after the new one is complete on disk, so an ``OSError`` (a full
    disk) leaves every earlier checkpoint as it was.
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = b"%s %s %d\n" % (MAGIC, hashlib.sha256(payload).hexdigest().encode(), len(payload))
    path = checkpoint_path(Path(ck_dir), step)

    def write(f):
        f.write(header)
        f.write(payload)

    atomic_write(path, write)
    for old in list_checkpoints(ck_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def verify_checkpoint(path: str | Path) -> None:
    """Check a checkpoint's header, length and checksum without unpickling it (:class:`CorruptCheckpoint`)."""
    _payload(Path(path))


def _payload(p: Path) -> bytes:
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise CorruptCheckpoint(f"{p}: unreadable ({e.strerror or type(e).__name__})") from None
    head, sep, payload = raw.partition(b"\n")
    parts = head.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != MAGIC or not parts[2].isdigit():
        raise CorruptCheckpoint(f"{p}: not a ddl checkpoint (bad header)")
    if len(payload) != int(parts[2]):
        raise CorruptCheckpoint(f"{p}: truncated ({len(payload)} of {int(parts[2])} bytes)")
    if hashlib.sha256(payload).hexdigest().encode() != parts[1]:
        raise CorruptCheckpoint(f"{p}: checksum mismatch (the file was altered or damaged)")
    return payload


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The state in checkpoint ``path``; :class:`CorruptCheckpoint` (one line) when it fails its checks."""
    p = Path(path)
    payload = _payload(p)
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a checksum-valid file torch cannot read: another format version
        raise CorruptCheckpoint(f"{p}: unreadable payload ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != 1:
        raise CorruptCheckpoint(f"{p}: unknown checkpoint format")
    return state


def load_latest(ck_dir: str | Path, verbose: bool = True) -> tuple[Path, dict[str, Any]]:
    """The newest checkpoint that passes its checks, falling back to older ones (saying so on stderr when
    ``verbose``); :class:`RunDirError` when there is none."""
    problems = []
    for p in list_checkpoints(ck_dir):
        try:
            state = read_checkpoint(p)
        except CorruptCheckpoint as e:
            problems.append(str(e))
            continue
        if verbose:
            for why in problems:
                print(f"ddl: warning: {why}; falling back to the previous checkpoint", file=sys.stderr)
        return p, state
    if problems:
        raise RunDirError(f"--resume: no valid checkpoint in {ck_dir} ({'; '.join(problems)})")
    raise RunDirError(f"--resume: no checkpoint in {ck_dir}")
