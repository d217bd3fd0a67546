"""Checkpoints and resume: bit-identical continuation, checksums, fallbacks, a full disk, a real kill -9."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ddl.rundir.checkpoint as ckpt
from ddl.commands.cli import main
from ddl.rundir.checkpoint import CorruptCheckpoint, list_checkpoints, read_checkpoint, write_checkpoint

# DPSGD with dropout and momentum: every piece of state a resume must restore matters here
BASE = ["--algo", "dpsgd", "--learners", "4", "--batch-size", "10", "--lr", "0.1", "--momentum", "0.5",
        "--dropout", "0.3", "--train-per-class", "40", "--test-per-class", "10", "--seed", "1", "--no-progress",
        "--checkpoint-every", "2", "--eval-every", "1", "--compute-ms", "1"]  # a fixed clock base: sim_time_s too


def cli(capsys, *args) -> tuple[int, str, str]:
    """``ddl ARGS`` in-process: (exit status, stdout, stderr)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def records(path: Path) -> list[dict]:
    """JSONL records without their wall-clock field."""
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in path.read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    la, lb = torch.load(a / "checkpoints" / "learners.pt"), torch.load(b / "checkpoints" / "learners.pt")
    assert torch.equal(la["weights"], lb["weights"])  # bit for bit
    assert (la["momentum"] is None) == (lb["momentum"] is None)
    if la["momentum"] is not None:
        assert torch.equal(la["momentum"], lb["momentum"])
    for name in ("metrics.jsonl", "noise.jsonl"):
        if (a / name).exists() or (b / name).exists():
            assert records(a / name) == records(b / name), name
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert (sa["status"], sa["steps"]) == (sb["status"], sb["steps"])


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The uninterrupted 6-epoch reference run."""
    out = tmp_path_factory.mktemp("full") / "run"
    assert main(["train", *BASE, "--epochs", "6", "--out", str(out)]) == 0
    return out


def test_resume_with_more_epochs_is_bit_identical(full_run, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(capsys, "train", *BASE, "--epochs", "3", "--out", out)[0] == 0
    code, _, err = cli(capsys, "train", "--out", out, "--resume", "--epochs", "6")
    assert code == 0, err
    assert "resuming" in err and "state-000000030.pt" in err  # from the final checkpoint of the 3-epoch run
    assert_same_run(full_run, out)
    assert [m["epoch"] for m in records(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    # the last two checkpoints are kept, each passes its checksum
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["state-000000060.pt", "state-000000040.pt"]
    assert read_checkpoint(out / "checkpoints" / "state-000000060.pt")["step"] == 60
    assert json.loads((out / "config.json").read_text())["epochs"] == 6


def test_noise_log_and_meter_state_continue(tmp_path, capsys):
    """noise.jsonl is cut back to the checkpoint and the meter's warm start is restored: same records."""
    args = ["--algo", "dpsgd", "--learners", "2", "--batch-size", "20", "--train-per-class", "20",
            "--test-per-class", "5", "--no-progress", "--measure-noise", "5", "--noise-samples", "50",
            "--noise-top-k", "2", "--checkpoint-every", "1", "--compute-ms", "1"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli(capsys, "train", *args, "--epochs", "2", "--out", full)[0] == 0
    assert cli(capsys, "train", *args, "--epochs", "1", "--out", part)[0] == 0
    assert cli(capsys, "train", "--out", part, "--resume", "--epochs", "2")[0] == 0
    assert len(records(full / "noise.jsonl")) == 2
    assert_same_run(full, part)


def test_checkpoint_format_checksum_and_fallback(full_run, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, _ = cli(capsys, "train", *BASE, "--epochs", "5", "--out", out)
    assert code == 0
    newest, older = list_checkpoints(out / "checkpoints")
    assert (newest.name, older.name) == ("state-000000050.pt", "state-000000040.pt")
    head = newest.read_bytes().split(b"\n", 1)[0].split()
    assert head[0] == b"DDLCKPT1" and len(head[1]) == 64
    # one flipped byte in the newest: resume says so and falls back to the one before
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    newest.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpoint, match="checksum mismatch"):
        read_checkpoint(newest)
    code, _, err = cli(capsys, "train", "--out", out, "--resume", "--epochs", "6")
    assert code == 0, err
    assert "ddl: warning:" in err and "checksum mismatch" in err and "falling back to the previous checkpoint" in err
    assert "state-000000040.pt" in err
    assert_same_run(full_run, out)
    # both corrupt (one truncated, one altered): one line, exit 2, nothing written
    a, b = list_checkpoints(out / "checkpoints")
    a.write_bytes(a.read_bytes()[:1000])
    b.write_bytes(b.read_bytes().replace(b"DDLCKPT1", b"XXXXXXXX", 1))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = cli(capsys, "train", "--out", out, "--resume", "--epochs", "8")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"ddl: error: --resume: no valid checkpoint in {out / 'checkpoints'}")
    assert "truncated" in last and "bad header" in last
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(full_run, tmp_path, capsys, monkeypatch):
    """ENOSPC in the middle of writing the epoch-4 checkpoint: the run stops with one line, the epoch-2 checkpoint
    stays valid, no temporary file is left, and resuming from it gives the uninterrupted run."""
    real = ckpt.atomic_write

    def filling_disk(path, write):
        if Path(path).name == "state-000000040.pt":
            def half_then_full(f):
                f.write(b"DDLCKPT1 partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            return real(path, half_then_full)
        return real(path, write)

    monkeypatch.setattr(ckpt, "atomic_write", filling_disk)
    out = tmp_path / "run"
    code, _, err = cli(capsys, "train", *BASE, "--epochs", "6", "--out", out)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"ddl: error: --out: cannot write a checkpoint to {out}")
    assert "No space left on device" in err and "state-000000020.pt is intact" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["state-000000000.pt", "state-000000020.pt"]
    assert read_checkpoint(out / "checkpoints" / "state-000000020.pt")["step"] == 20
    monkeypatch.setattr(ckpt, "atomic_write", real)
    code, _, err = cli(capsys, "train", "--out", out, "--resume")
    assert code == 0, err
    assert_same_run(full_run, out)


def test_write_checkpoint_keeps_two_and_detects_truncation(tmp_path):
    for step in (0, 5, 10):
        write_checkpoint(tmp_path, step, {"format": 1, "step": step, "w": torch.arange(step + 1.0)})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["state-000000010.pt", "state-000000005.pt"]
    assert torch.equal(read_checkpoint(tmp_path / "state-000000010.pt")["w"], torch.arange(11.0))
    p = tmp_path / "state-000000010.pt"
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(CorruptCheckpoint, match=r"truncated \(\d+ of \d+ bytes\)"):
        read_checkpoint(p)
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]  # no temporaries


def test_resume_refusals_are_one_line_and_touch_nothing(full_run, tmp_path, capsys):
    snapshot = {p: p.read_bytes() for p in full_run.rglob("*") if p.is_file()}
    cases = [
        (["--out", full_run, "--resume", "--lr", "0.2"],
         "ddl: error: --lr: cannot change when resuming (the run has 0.1, given 0.2); only execution and stopping "
         "flags may change"),
        (["--out", full_run, "--resume", "--seed", "2"], "ddl: error: --seed: cannot change when resuming"),
        (["--out", full_run, "--resume", "--dropout", "0.5"], "ddl: error: --dropout: cannot change when resuming"),
        (["--out", full_run, "--resume"],
         f"ddl: error: --resume: {full_run} is finished (max_epochs after 60 steps); give a larger --epochs"),
        (["--out", full_run, "--resume", "--epochs", "2"],
         f"ddl: error: --resume: {full_run} is finished (max_epochs after 60 steps)"),
        (["--out", tmp_path, "--resume"],
         f"ddl: error: --resume: {tmp_path} holds no run to resume (no config.json); start it without --resume"),
        (["--out", tmp_path / "nope", "--resume"], "ddl: error: --resume: "),
        (["--resume"], "ddl: error: --resume: needs --out DIR, the run directory to continue"),
        (["--out", full_run, "--resume", "--lr", "nan"], "ddl: error: --lr: must be a finite number, got nan"),
    ]
    for args, expect in cases:
        code, out, err = cli(capsys, "train", *args)
        assert code == 2, args
        assert err.count("\n") == 1 and err.startswith(expect), (args, err)
    # the stopping rule and execution settings may change: a larger epoch budget continues the finished run
    assert {p: p.read_bytes() for p in full_run.rglob("*") if p.is_file()} == snapshot


def test_resume_of_a_diverged_run_is_refused(tmp_path, capsys):
    out = tmp_path / "div"
    code, stdout, _ = cli(capsys, "train", "--algo", "dpsgd", "--learners", "4", "--batch-size", "10", "--lr", "1e4",
                          "--init-scale", "5", "--epochs", "5", "--train-per-class", "40", "--no-progress", "--out",
                          out)
    assert code == 0 and "diverged at step" in stdout and "(learner " in stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["status"] == "diverged" and 0 <= s["diverged_learner"] < 4
    assert not (s["diverged_loss"] == s["diverged_loss"] and abs(s["diverged_loss"]) < float("inf"))  # NaN or ±inf
    code, _, err = cli(capsys, "train", "--out", out, "--resume", "--epochs", "9")
    assert code == 2 and err.startswith(f"ddl: error: --resume: {out} diverged at step {s['diverged_step']}")
    # killed after its final checkpoint, before the summary: resuming finishes it as it ended, training nothing
    for name in ("summary.json", "checkpoints/averaged.pt", "checkpoints/learners.pt"):
        (out / name).unlink()
    lines = (out / "metrics.jsonl").read_text()
    code, stdout, err = cli(capsys, "train", "--out", out, "--resume")
    assert code == 0, err
    again = json.loads((out / "summary.json").read_text())
    assert {k: again[k] for k in ("status", "steps", "diverged_step", "diverged_learner")} == \
        {k: s[k] for k in ("status", "steps", "diverged_step", "diverged_learner")}
    assert (out / "metrics.jsonl").read_text() == lines and (out / "checkpoints" / "learners.pt").is_file()


def _wait_for_checkpoint_after(out: Path, step: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(ckpt.step_of(p) > step for p in list_checkpoints(out / "checkpoints")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended before a checkpoint: {proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    raise AssertionError("no checkpoint in time")


def test_kill_9_of_a_real_training_then_resume(tmp_path):
    """kill -9 of a real `ddl train` right after its first epoch checkpoint, then `--resume`: the finished
    run equals the uninterrupted one bit for bit, metrics with no line lost or repeated."""
    args = ["--algo", "dpsgd", "--learners", "4", "--batch-size", "5", "--lr", "0.05", "--dropout", "0.2",
            "--momentum", "0.9", "--train-per-class", "200", "--test-per-class", "10", "--seed", "4", "--epochs",
            "4", "--checkpoint-every", "1", "--no-progress", "--compute-ms", "1"]
    out, ref = tmp_path / "killed", tmp_path / "ref"
    # every run in its own process with the same threads: float sums over many elements (the consensus distance)
    # round differently with another thread count
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.Popen([sys.executable, "-m", "ddl", "train", *args, "--out", str(ref)], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen([sys.executable, "-m", "ddl", "train", *args, "--out", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint_after(out, 0, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    r = subprocess.run([sys.executable, "-m", "ddl", "train", "--out", str(out), "--resume"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    assert reference.wait(timeout=600) == 0, reference.communicate()[1][-2000:]
    assert_same_run(ref, out)
    assert [m["epoch"] for m in records(out / "metrics.jsonl")] == list(range(1, 5))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_is_bit_identical(tmp_path):
    """On a GPU the dropout masks come from the CUDA generator: its state is checkpointed and restored too.
    Synthetic data (no embedded data set needed on a GPU machine)."""
    import dataclasses

    from ddl.config import TrainConfig
    from ddl.data import Dataset
    from ddl.loop.train import Trainer

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(400, 1, 28, 28, generator=g), torch.randint(0, 10, (400,), generator=g)
    data = Dataset("mnist5k", x[:300], y[:300], x[300:], y[300:], torch.ones(300, dtype=torch.bool), y[:300], 10)
    cfg = TrainConfig(algo="dpsgd", learners=4, batch_size=5, lr=0.05, momentum=0.9, dropout=0.3, epochs=4,
                      checkpoint_every=1, device="cuda", compute_ms=1.0, progress=False, out=str(tmp_path / "full"))
    Trainer(cfg, data=data).run()
    part = dataclasses.replace(cfg, out=str(tmp_path / "part"), epochs=2)
    Trainer(part, data=data).run()
    Trainer(dataclasses.replace(part, epochs=4, resume=True), data=data).run()
    assert_same_run(tmp_path / "full", tmp_path / "part")
    ck = read_checkpoint(list_checkpoints(tmp_path / "part" / "checkpoints")[0])
    assert ck["rng_cuda"] is not None and ck["rng_cuda"].shape[0] == 1


@pytest.mark.slow  # three pairs of end-to-end runs (~80 s on 2 cores)
@pytest.mark.parametrize("algo_args", [
    ["--algo", "gradient_tracking", "--momentum", "0"],
    ["--algo", "choco", "--compressor", "qsgd", "--compress-ratio", "0.125", "--consensus-step", "0.5"],
    ["--algo", "local_sgd", "--period", "3"],
], ids=["gradient_tracking", "choco-qsgd", "local_sgd"])
def test_resume_restores_the_algorithms_own_state(tmp_path, capsys, algo_args):
    """The tracker y and last gradient, CHOCO's public copies ŵ and Σ M ŵ, and the quantiser's stream
    (a function of the step): a run resumed after 2 epochs ends bit-identical to an uninterrupted one."""
    base = [*BASE, *algo_args, "--dropout", "0", "--checkpoint-every", "1"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert cli(capsys, "train", *base, "--epochs", "4", "--out", full)[0] == 0
    assert cli(capsys, "train", *base, "--epochs", "2", "--out", cut)[0] == 0
    code, _, err = cli(capsys, "train", "--out", cut, "--resume", "--epochs", "4")
    assert code == 0, err
    assert_same_run(full, cut)
    a, b = (read_checkpoint(list_checkpoints(p / "checkpoints")[0]) for p in (full, cut))
    assert a["step"] == b["step"] == 40
    assert set(a["algorithm_rows"]) == set(b["algorithm_rows"])
    assert bool(a["algorithm_rows"]) == (algo_args[1] != "local_sgd")
    for k, v in a["algorithm_rows"].items():
        assert torch.equal(v, b["algorithm_rows"][k]), k
