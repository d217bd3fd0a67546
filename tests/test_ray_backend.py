"""A real local Ray cluster: K actors reproduce the simulator's learner weights over both transports."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest
import ray  # a hard dependency: its tests fail, never skip, when it is missing
import torch

from ddl.cli import main
from ddl.config import ConfigError, TrainConfig
from ddl.drivers.ray_cluster import RayWorkers
from ddl.train import train

TINY = dict(train_per_class=20, test_per_class=10, epochs=1, batch_size=5, lr=0.2, seed=3, progress=False)


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
    r = subprocess.run([sys.executable, "-m", "ddl.cli", "train", "--backend", "ray", "--address", f"127.0.0.1:{port}",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 2
    assert r.stderr.startswith(f"ddl: error: --address: no Ray cluster reachable at 127.0.0.1:{port}")
    assert r.stderr.count("\n") == 1
