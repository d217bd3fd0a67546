"""Killed workers: a real torchrun rank and a real Ray actor are killed with SIGKILL mid-run; the run restarts its
workers, resumes from the last checkpoint on its own and ends equal to the simulator (float64, ≤ 1e-6).

Workers are found through /proc as descendants of the process the test started, so only this test's processes are
ever signalled (no ``ray stop``, no kill by name).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ddl.config import TrainConfig
from ddl.loop.train import train
from ddl.rundir.checkpoint import list_checkpoints, step_of

pytestmark = pytest.mark.slow  # real processes (torchrun ranks, Ray actors): see docs

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
# float64 keeps the simulator and the distributed transports within rounding (≪ 1e-6) over hundreds of steps; 50
# steps per epoch and a checkpoint every epoch leave seven epochs after the first checkpoint to kill a worker in
RUN = dict(algo="dpsgd", learners=4, batch_size=5, lr=0.1, train_per_class=100, test_per_class=10, epochs=8,
           checkpoint_every=1, seed=2, dtype="float64")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _flags(**kw) -> list[str]:
    return [x for k, v in kw.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def _processes() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of every process visible in /proc."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        out[int(d.name)] = (ppid, cmd)
    return out


def _descendants(root: int) -> dict[int, str]:
    procs, tree, grew = _processes(), {root}, True
    while grew:
        grew = False
        for pid, (ppid, _) in procs.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return {pid: procs[pid][1] for pid in tree - {root} if pid in procs}


def _env_of(pid: int) -> dict[str, str]:
    try:
        raw = (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace")
    except OSError:  # ended meanwhile
        return {}
    return dict(x.split("=", 1) for x in raw.split("\0") if "=" in x)


def _wait_for_checkpoint(out: Path, proc: subprocess.Popen, timeout: float = 300) -> int:
    """The step of the first checkpoint after step 0 (the run is then mid-way)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [step_of(p) for p in list_checkpoints(out / "checkpoints")]
        if any(s > 0 for s in steps):
            return max(steps)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


def _reap(proc: subprocess.Popen) -> None:
    """Make sure nothing this test started outlives it."""
    if proc.poll() is None:
        for pid in _descendants(proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait(timeout=30)


def _sim_weights(tmp_path) -> torch.Tensor:
    res = train(TrainConfig(**RUN, progress=False, out=str(tmp_path / "sim")))
    return torch.load(res.out / "checkpoints" / "learners.pt")["weights"]


def _assert_complete(out: Path, tmp_path) -> None:
    w = torch.load(out / "checkpoints" / "learners.pt")["weights"]
    assert w.dtype == torch.float64
    assert (w - _sim_weights(tmp_path)).abs().max() <= 1e-6
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [float(e) for e in range(1, 9)]  # no evaluation lost or repeated by the restart


def test_killed_torchrun_rank_restarts_and_resumes(tmp_path):
    out = tmp_path / "tr"
    cmd = [TORCHRUN, "--standalone", "--nproc-per-node=2", "--max-restarts=1", "-m", "ddl", "train",
           "--backend", "torchrun", "--no-progress", "--out", str(out), *_flags(**RUN)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        _wait_for_checkpoint(out, proc)
        ranks = {int(_env_of(pid).get("RANK", -1)): pid for pid, c in _descendants(proc.pid).items()
                 if " -m ddl train " in c}  # the workers: torchrun's agent is proc itself
        os.kill(ranks[1], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        _reap(proc)
    assert proc.returncode == 0, stderr[-3000:]
    assert "ddl: torchrun restart 1: continuing" in stderr and "ddl: resuming" in stderr
    assert stdout.count("run directory") == 1
    _assert_complete(out, tmp_path)


def _ray_train(out: Path, restarts: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "ddl", "train", "--backend", "ray", "--workers", "2", "--ray-max-restarts",
           str(restarts), "--no-progress", "--out", str(out), *_flags(**RUN)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _kill_an_actor(proc: subprocess.Popen) -> None:
    actors = [pid for pid, c in _descendants(proc.pid).items() if c.startswith("ray::LearnerWorker")]
    assert actors, "no learner actor found"
    os.kill(actors[-1], signal.SIGKILL)


def test_killed_ray_actor_is_replaced_and_the_run_resumes(tmp_path):
    """The driver's own local cluster (started and stopped by the CLI); one actor killed after a checkpoint."""
    out = tmp_path / "ray"
    proc = _ray_train(out, restarts=1)
    try:
        _wait_for_checkpoint(out, proc)
        _kill_an_actor(proc)
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        _reap(proc)
    assert proc.returncode == 0, stderr[-3000:]
    assert "restarting the actors (1 of 1) from the last checkpoint" in stderr and "ddl: resuming" in stderr
    _assert_complete(out, tmp_path)


def test_ray_gives_up_after_its_restarts_with_one_line(tmp_path):
    out = tmp_path / "ray0"
    proc = _ray_train(out, restarts=0)
    try:
        step = _wait_for_checkpoint(out, proc)
        _kill_an_actor(proc)
        _, stderr = proc.communicate(timeout=300)
    finally:
        _reap(proc)
    assert proc.returncode == 2
    errors = [x for x in stderr.splitlines() if x.startswith("ddl: error:")]
    # Ray forwards the actors' own output before it; the driver's last word is the one line
    assert len(errors) == 1 and [x for x in stderr.splitlines() if x.strip()][-1] == errors[0], stderr[-3000:]
    assert errors[0].startswith("ddl: error: ray: ") and "died" in errors[0]
    assert errors[0].endswith(f"gave up after 0 restarts (--ray-max-restarts 0); continue from the last "
                              f"checkpoint with `ddl train --out {out} --resume`")
    assert any(step_of(p) >= step for p in list_checkpoints(out / "checkpoints"))
