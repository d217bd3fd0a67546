"""The training loop, run directory and CLI, end to end on the embedded MNIST-5k."""

import json
import subprocess
import sys

import torch

from ddl.commands.cli import main
from ddl.loop.train import train
from ddl.rundir.layout import load_run


def _ddl(*args):
    return subprocess.run([sys.executable, "-m", "ddl", *args], capture_output=True, text=True)


def test_cli_ssgd_4x25_equals_1x100(tmp_path):
    common = ["--algo", "ssgd", "--lr", "0.1", "--epochs", "3", "--seed", "7", "--no-progress"]
    a = _ddl("train", *common, "--learners", "4", "--batch-size", "25", "--out", str(tmp_path / "a"))
    b = _ddl("train", *common, "--learners", "1", "--batch-size", "100", "--out", str(tmp_path / "b"))
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    sa = torch.load(tmp_path / "a" / "checkpoints" / "averaged.pt")
    sb = torch.load(tmp_path / "b" / "checkpoints" / "averaged.pt")
    assert sa.keys() == sb.keys()
    for k in sa:
        assert (sa[k] - sb[k]).abs().max() <= 1e-6, k


def test_cli_dpsgd_run_directory(tmp_path):
    out = tmp_path / "dp"
    r = _ddl("train", "--algo", "dpsgd", "--learners", "8", "--batch-size", "25", "--lr", "0.2", "--epochs", "3",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "run directory" in r.stdout
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["algo"] == "dpsgd" and cfg["learners"] == 8 and cfg["world"]["workers"] == 1
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1.0, 2.0, 3.0]
    assert all(m["consensus"] > 0 for m in metrics)
    assert metrics[-1]["test_acc"] > 0.5
    run = load_run(out)
    assert run.summary["status"] == "max_epochs" and run.summary["steps"] == 3 * 20
    learners = run.learners()
    assert learners["weights"].shape == (8, 784 * 30 + 30 * 30 + 30 * 10)
    # the averaged checkpoint is the mean of the learners
    model = run.model()
    w = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.allclose(w, learners["weights"].mean(0), atol=1e-6)
    ds = run.dataset()
    assert ds.n_train == 4000


def test_config_file_and_flag_override(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("algo: dpsgd\nlearners: 4\nbatch-size: 10\nepochs: 1\nlr: 0.05\ntrain_per_class: 20\n")
    out = tmp_path / "r"
    assert main(["train", "--config", str(conf), "--lr", "0.07", "--out", str(out), "--no-progress"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["algo"] == "dpsgd" and cfg["batch_size"] == 10 and cfg["lr"] == 0.07


def test_bad_input_is_one_clear_line(tmp_path):
    r = _ddl("train", "--learners", "0", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.strip() == "ddl: error: --learners: must be ≥ 1, got 0"
    r = _ddl("train", "--dataset", "mnist", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--data-dir" in r.stderr
    (tmp_path / "x").mkdir(exist_ok=True)
    ok = _ddl("train", "--epochs", "1", "--train-per-class", "10", "--out", str(tmp_path / "y"), "--no-progress")
    again = _ddl("train", "--epochs", "1", "--train-per-class", "10", "--out", str(tmp_path / "y"))
    assert ok.returncode == 0 and again.returncode == 2 and "--overwrite" in again.stderr


def test_divergence_is_a_result(small_cfg):
    res = train(small_cfg(algo="dpsgd", learners=4, batch_size=10, lr=1e4, init_scale=5.0, epochs=5))
    assert res.status == "diverged" and res.diverged_step is not None and res.diverged_step < res.steps
    s = json.loads((res.out / "summary.json").read_text())
    assert s["status"] == "diverged" and s["diverged_step"] == res.diverged_step


def test_stop_rule_converged(small_cfg):
    res = train(small_cfg(algo="ssgd", learners=2, batch_size=10, lr=0.2, epochs=400, stop_loss=0.05,
                          train_per_class=10))
    assert res.status == "converged"
    assert res.final["train_loss"] < 0.05 and res.final["train_acc"] >= 0.99
    assert res.steps < 400 * 10


def test_schedule_and_weight_decay_window():
    from ddl.algorithms.schedule import learning_rate, weight_decay
    from ddl.config import TrainConfig

    c = TrainConfig(lr=1.0, lr_schedule="step", lr_milestones=[2, 4], lr_gamma=0.1, warmup_epochs=1,
                    weight_decay=0.01, wd_stop_epoch=3)
    assert learning_rate(c, 0, 10) == 0.1 and learning_rate(c, 9, 10) == 1.0
    assert learning_rate(c, 25, 10) == pytest_approx(0.1) and learning_rate(c, 45, 10) == pytest_approx(0.01)
    assert weight_decay(c, 29, 10) == 0.01 and weight_decay(c, 30, 10) == 0.0


def pytest_approx(x):
    import pytest

    return pytest.approx(x)
