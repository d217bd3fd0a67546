"""A real local Ray cluster: K actors reproduce the simulator's learner weights over both transports."""

import dataclasses
import json
import math
import os
import socket
import subprocess
import sys

import pytest
import ray  # a hard dependency: its tests fail, never skip, when it is missing
import torch

from ddl.commands.cli import main
from ddl.config import ConfigError, TrainConfig
from ddl.drivers.ray_cluster import RayWorkers
from ddl.loop.train import train

pytestmark = pytest.mark.slow  # real processes (torchrun ranks, Ray, worker pools): see docs

TINY = dict(train_per_class=20, test_per_class=10, epochs=1, batch_size=5, lr=0.2, seed=3, progress=False,
            compute_ms=2.0)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module (starting Ray costs seconds); logical CPUs for two pools at once."""
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module", params=["torch", "objects"])
def pool(request, cluster):
    """Four connected actors, one learner each, reused by the SSGD and DPSGD runs."""
    with RayWorkers(4, 4, transport=request.param) as p:
        yield p


def sim_weights(cfg: TrainConfig, tmp_path) -> torch.Tensor:
    res = train(dataclasses.replace(cfg, out=str(tmp_path / "sim")))
    return torch.load(res.out / "checkpoints" / "learners.pt")["weights"]


@pytest.mark.parametrize("algo", ["ssgd", "dpsgd"])
def test_ray_actors_reproduce_simulator(pool, tmp_path, algo):
    cfg = TrainConfig(algo=algo, learners=4, out=str(tmp_path / "ray"), backend="ray", **TINY)
    res = pool.train(cfg)
    assert res.status == "max_epochs" and res.steps == 10
    w = torch.load(res.out / "checkpoints" / "learners.pt")["weights"]
    ref = sim_weights(cfg, tmp_path)
    assert (w - ref).abs().max() <= 1e-6
    if algo == "dpsgd":
        assert (w - w.mean(0)).abs().max() > 1e-5
    world = json.loads((res.out / "config.json").read_text())["world"]
    assert world == {"backend": "ray", "workers": 4, "device": "cpu"}
    # the simulated clock depends on config + seed only: the same stamp as the simulator's run
    sim_time = json.loads((tmp_path / "sim" / "summary.json").read_text())["sim_time_s"]
    assert json.loads((res.out / "summary.json").read_text())["sim_time_s"] == sim_time > 0


def test_ray_actors_reproduce_simulator_on_every_sparse_topology(pool, tmp_path):
    """Torus (2 × 2), exponential and one-peer exponential (a new peer every step) on the same four actors."""
    for topo, momentum in (("torus", 0.0), ("exponential", 0.9), ("one-peer-exponential", 0.0)):
        cfg = TrainConfig(algo="dpsgd", learners=4, topology=topo, momentum=momentum, out=str(tmp_path / topo),
                          backend="ray", **TINY)
        w = torch.load(pool.train(cfg).out / "checkpoints" / "learners.pt")["weights"]
        ref = sim_weights(cfg, tmp_path / f"sim-{topo}")
        assert (w - ref).abs().max() <= 1e-6, topo
        assert (w - w.mean(0)).abs().max() > 1e-5, topo


def test_ray_actors_reproduce_simulator_for_the_other_algorithms(pool, tmp_path):
    """local SGD, Gossip-PGA, gradient tracking and CHOCO-SGD (top-k and qsgd) on the same four actors."""
    cases = [("local_sgd", dict(period=3, momentum=0.9, weight_decay=1e-3)), ("gossip_pga", dict(period=3)),
             ("gradient_tracking", dict(weight_decay=1e-3)),
             ("choco", dict(compressor="topk", compress_ratio=0.1, consensus_step=0.5, momentum=0.9)),
             ("choco", dict(compressor="qsgd", compress_ratio=0.25, consensus_step=0.5))]
    for i, (algo, extra) in enumerate(cases):
        cfg = TrainConfig(algo=algo, learners=4, out=str(tmp_path / f"ray{i}"), backend="ray", **TINY, **extra)
        w = torch.load(pool.train(cfg).out / "checkpoints" / "learners.pt")["weights"]
        ref = sim_weights(cfg, tmp_path / f"sim{i}")
        assert (w - ref).abs().max() <= 1e-6, (algo, extra)
        assert (w - w.mean(0)).abs().max() > 1e-5, (algo, extra)


def test_cli_ray_two_actors_of_two_learners(cluster, tmp_path, capsys):
    """``ddl train --backend ray`` on the running cluster: 2 actors × 2 learners, DPSGD ring over 4 learners."""
    out = tmp_path / "cli"
    args = ["train", "--backend", "ray", "--workers", "2", "--algo", "dpsgd", "--learners", "4", "--out", str(out)]
    for k, v in TINY.items():
        args += [f"--{k.replace('_', '-')}", str(v)] if k != "progress" else ["--no-progress"]
    assert main(args) == 0
    assert capsys.readouterr().out.count("run directory") == 1
    w = torch.load(out / "checkpoints" / "learners.pt")["weights"]
    ref = sim_weights(TrainConfig(algo="dpsgd", learners=4, **TINY), tmp_path)
    assert (w - ref).abs().max() <= 1e-6
    assert ray.is_initialized()  # a cluster the CLI did not start is left running


def test_bad_worker_counts(cluster):
    with pytest.raises(ConfigError, match="^--learners: 4 learners cannot be split evenly over 3 workers"):
        RayWorkers(4, 3)
    with pytest.raises(ConfigError, match="^--workers: 64 actors need 64 free CPUs"):
        RayWorkers(64, 64)


def test_unreachable_address_is_one_clear_line(tmp_path):
    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "ddl", "train", "--backend", "ray", "--address", f"127.0.0.1:{port}",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2
    assert r.stderr.startswith(f"ddl: error: --address: no Ray cluster reachable at 127.0.0.1:{port}")
    assert r.stderr.count("\n") == 1


def test_divergence_is_a_result_on_ray(pool, tmp_path):
    """A diverging run ends as a result on the actors too: same step, learner and status as the simulator."""
    kw = {**TINY, "lr": 1e4, "init_scale": 5.0, "epochs": 3}
    cfg = TrainConfig(algo="dpsgd", learners=4, out=str(tmp_path / "ray"), backend="ray", **kw)
    res = pool.train(cfg)
    ref = train(dataclasses.replace(cfg, backend="sim", out=str(tmp_path / "sim")))
    assert res.status == ref.status == "diverged"
    assert (res.diverged_step, res.diverged_learner) == (ref.diverged_step, ref.diverged_learner)
    assert res.diverged_step < res.steps and not math.isfinite(res.diverged_loss)
    summary = json.loads((res.out / "summary.json").read_text())
    assert summary["diverged_learner"] == ref.diverged_learner


def test_resume_on_actors_a_run_checkpointed_by_the_simulator(pool, tmp_path):
    """Without dropout a run may move between backends and worker counts on resume (1 worker → 4 actors)."""
    cfg = TrainConfig(algo="dpsgd", learners=4, out=str(tmp_path / "moved"), **{**TINY, "epochs": 1})
    train(cfg)
    res = pool.train(dataclasses.replace(cfg, backend="ray", resume=True, epochs=2))
    assert res.status == "max_epochs" and res.steps == 20
    w = torch.load(res.out / "checkpoints" / "learners.pt")["weights"]
    ref = sim_weights(dataclasses.replace(cfg, epochs=2), tmp_path)
    assert (w - ref).abs().max() <= 1e-6
    assert [json.loads(x)["epoch"] for x in (res.out / "metrics.jsonl").read_text().splitlines()] == [1.0, 2.0]
