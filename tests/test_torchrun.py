"""Real ``torchrun`` ranks (gloo on CPU) reproduce the simulator's learner weights, and fail with one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ddl.commands.cli import main
from ddl.config import ConfigError, TrainConfig
from ddl.loop.train import train

pytestmark = pytest.mark.slow  # real processes (torchrun ranks, Ray, worker pools): see docs

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
TINY = dict(train_per_class=20, test_per_class=10, epochs=1, batch_size=5, lr=0.2, seed=3, compute_ms=2.0)


def _flags(**kw) -> list[str]:
    out = []
    for k, v in kw.items():
        out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def torchrun(k: int, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [TORCHRUN, "--standalone", f"--nproc-per-node={k}", "-m", "ddl", "train", "--backend", "torchrun", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)


def sim_weights(tmp_path, algo: str, n: int) -> torch.Tensor:
    cfg = TrainConfig(algo=algo, learners=n, progress=False, out=str(tmp_path / f"sim-{algo}-{n}"), **TINY)
    return torch.load(train(cfg).out / "checkpoints" / "learners.pt")["weights"]


@pytest.mark.parametrize("ranks,learners", [(4, 4), (2, 4)], ids=["4x1", "2x2"])
@pytest.mark.parametrize("algo", ["ssgd", "dpsgd"])
def test_torchrun_reproduces_simulator(tmp_path, algo, ranks, learners):
    out = tmp_path / "tr"
    r = torchrun(ranks, "--algo", algo, "--learners", str(learners), "--no-progress", "--out", str(out),
                 *_flags(**TINY))
    assert r.returncode == 0, r.stderr[-3000:]
    # only rank 0 reports
    assert r.stdout.count("run directory") == 1, r.stdout
    w = torch.load(out / "checkpoints" / "learners.pt")["weights"]
    ref = sim_weights(tmp_path, algo, learners)
    assert w.shape == ref.shape == (learners, 784 * 30 + 30 * 30 + 30 * 10)
    assert (w - ref).abs().max() <= 1e-6
    if algo == "dpsgd":
        assert (w - w.mean(0)).abs().max() > 1e-5  # learners really differ: the exchange moved distinct rows
    cfg = json.loads((out / "config.json").read_text())
    world = {k: v for k, v in cfg["world"].items() if k != "launch_id"}  # launch_id: torchrun's run id
    assert world == {"backend": "torchrun", "workers": ranks, "device": "cpu"} and cfg["world"]["launch_id"]
    # rank 0 alone wrote complete files: no temporaries or duplicates left behind
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert names == ["checkpoints", "checkpoints/averaged.pt", "checkpoints/learners.pt",
                     "checkpoints/state-000000000.pt", "checkpoints/state-000000010.pt", "config.json",
                     "metrics.jsonl", "summary.json"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    # the simulated clock depends on config + seed only: the same stamp as the simulator's run
    sim_summary = json.loads((tmp_path / f"sim-{algo}-{learners}" / "summary.json").read_text())
    assert json.loads((out / "summary.json").read_text())["sim_time_s"] == sim_summary["sim_time_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="nccl is available on this machine")
def test_nccl_without_gpu_is_one_clear_line(tmp_path):
    r = torchrun(2, "--dist-backend", "nccl", "--learners", "2", "--out", str(tmp_path / "x"), *_flags(**TINY))
    assert r.returncode != 0
    lines = [x for x in r.stderr.splitlines() if x.startswith("ddl: error")]
    assert lines == ["ddl: error: --dist-backend: nccl needs a CUDA GPU and none is available; use --dist-backend gloo"]
    assert not (tmp_path / "x").exists()


def test_errors_before_joining_the_group(monkeypatch, capsys):
    from ddl.comm.torchdist import choose_backend
    from ddl.drivers.torchrun import setup_torchrun

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit) as e:
        main(["train", "--backend", "torchrun", "--learners", "4", "--no-progress"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ddl: error: --backend: torchrun needs the torchrun launcher") and err.count("\n") == 1

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="^--learners: 4 learners cannot be split evenly over 3 workers"):
        setup_torchrun(4)
    with pytest.raises(ConfigError, match="^--workers: 2 given but torchrun started 3 ranks"):
        setup_torchrun(6, workers=2)
    assert choose_backend("gloo", "cpu") == "gloo"
    if not torch.cuda.is_available():
        assert choose_backend("auto", "auto") == "gloo"


def test_torchrun_topologies_reproduce_simulator_and_send_only_needed_rows(tmp_path):
    """Torus, exponential and one-peer exponential graphs, 4 ranks × 2 learners, in one torchrun launch: equal
    weights to the simulator, and each rank's exchange payload = the rows its peers' learners average, step by
    step (the one-peer graph changes peers every step)."""
    from ddl.algorithms.topology import make_topology

    base = dict(algo="dpsgd", learners=8, **TINY)
    runs = [dict(base, topology="torus"), dict(base, topology="exponential", momentum=0.9, weight_decay=1e-3),
            dict(base, topology="one-peer-exponential")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = str(Path(__file__).with_name("torchrun_topologies.py"))
    r = subprocess.run([TORCHRUN, "--standalone", "--nproc-per-node=4", script, str(tmp_path), json.dumps(runs)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    P = 784 * 30 + 30 * 30 + 30 * 10
    for kw in runs:
        name = kw["topology"]
        w = torch.load(tmp_path / name / "checkpoints" / "learners.pt")["weights"]
        cfg = TrainConfig(progress=False, out=str(tmp_path / f"sim-{name}"), **kw)
        res = train(cfg)
        ref = torch.load(res.out / "checkpoints" / "learners.pt")["weights"]
        assert (w - ref).abs().max() <= 1e-6, name
        assert (w - w.mean(0)).abs().max() > 1e-5, name
        # rows rank r sends to rank q at step t: its rows with non-zero weight in q's rows of M(t)
        topo = make_topology(name, 8)
        for rank in range(4):
            rows = 0
            for step in range(res.steps):
                M = topo.matrix_at(step)
                for peer in range(4):  # a row two peers need travels to each of them
                    if peer != rank:
                        rows += int((M[2 * peer : 2 * peer + 2, 2 * rank : 2 * rank + 2].sum(0) > 0).sum())
            sent = json.loads((tmp_path / f"traffic-{name}-rank{rank}.json").read_text())
            assert sent["bytes"].get("exchange", 0) == rows * P * 4, (name, rank)


# the other synchronous algorithms, with the options that give each its own communication (10 steps: step 10 is
# no global-average step for H = 3, so the learners differ at the end)
OTHER_ALGORITHMS = [
    ("local_sgd", dict(period=3, momentum=0.9, weight_decay=1e-3)),
    ("gossip_pga", dict(period=3, momentum=0.5)),
    ("gradient_tracking", dict(weight_decay=1e-3)),
    ("choco", dict(compressor="topk", compress_ratio=0.1, consensus_step=0.5, momentum=0.9)),
    ("choco", dict(compressor="qsgd", compress_ratio=0.25, consensus_step=0.5)),
]


@pytest.mark.parametrize("algo,extra", OTHER_ALGORITHMS, ids=[f"{a}-{e.get('compressor', '')}"
                                                              for a, e in OTHER_ALGORITHMS])
def test_torchrun_reproduces_simulator_for_the_other_algorithms(tmp_path, algo, extra):
    out = tmp_path / "tr"
    r = torchrun(2, "--algo", algo, "--learners", "4", "--no-progress", "--out", str(out), *_flags(**TINY, **extra))
    assert r.returncode == 0, r.stderr[-3000:]
    w = torch.load(out / "checkpoints" / "learners.pt")["weights"]
    cfg = TrainConfig(algo=algo, learners=4, progress=False, out=str(tmp_path / "sim"), **TINY, **extra)
    ref = torch.load(train(cfg).out / "checkpoints" / "learners.pt")["weights"]
    assert (w - ref).abs().max() <= 1e-6
    assert (w - w.mean(0)).abs().max() > 1e-5  # the learners really differ
    sim_summary = json.loads((tmp_path / "sim" / "summary.json").read_text())
    assert json.loads((out / "summary.json").read_text())["sim_time_s"] == sim_summary["sim_time_s"] > 0


def test_torchrun_dirichlet_shards_reproduce_simulator(tmp_path):
    """Non-IID data: every rank's learners draw from their own shards, exactly as in the simulator."""
    part = dict(partition="dirichlet", dirichlet_alpha=0.1)
    out = tmp_path / "tr"
    r = torchrun(2, "--algo", "dpsgd", "--learners", "4", "--no-progress", "--out", str(out), *_flags(**TINY, **part))
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = TrainConfig(algo="dpsgd", learners=4, progress=False, out=str(tmp_path / "sim"), **TINY, **part)
    ref = torch.load(train(cfg).out / "checkpoints" / "learners.pt")["weights"]
    w = torch.load(out / "checkpoints" / "learners.pt")["weights"]
    assert (w - ref).abs().max() <= 1e-6
    assert json.loads((out / "partition.json").read_text()) == json.loads((tmp_path / "sim" / "partition.json")
                                                                          .read_text())
