"""Non-IID data: Dirichlet shards and the per-learner streams drawn from them (ddl/data/partition.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddl.compute.stream import MinibatchStream, ShardStream
from ddl.config import TrainConfig
from ddl.data.partition import class_histograms, dirichlet_shards
from ddl.errors import ConfigError
from ddl.loop.train import train


def _labels(per_class: int = 200, classes: int = 10, seed: int = 0) -> torch.Tensor:
    y = torch.arange(classes).repeat_interleave(per_class)
    return y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(seed))]


def test_shards_partition_the_training_set_and_histograms_sum_to_sizes():
    y = _labels()
    shards = dirichlet_shards(y, 8, 0.5, seed=3, min_size=5)
    allidx = torch.cat(shards).sort().values
    assert torch.equal(allidx, torch.arange(y.numel()))  # every sample in exactly one shard
    hist = class_histograms(y, shards, 10)
    assert [sum(h) for h in hist] == [s.numel() for s in shards]
    assert np.array(hist).sum(0).tolist() == [200] * 10  # every class fully distributed
    assert min(s.numel() for s in shards) >= 5


def _concentration(alpha: float, seed: int = 0) -> float:
    """Mean over learners of the largest class fraction in its shard (1/classes uniform, 1 one class)."""
    y = _labels()
    h = np.array(class_histograms(y, dirichlet_shards(y, 8, alpha, seed, min_size=1), 10), dtype=float)
    return float((h.max(1) / h.sum(1)).mean())


def test_large_alpha_is_near_uniform_small_alpha_is_concentrated():
    assert _concentration(1000.0) < 0.15  # uniform: 0.1
    assert _concentration(0.01) > 0.7  # 8 learners, 10 classes: one or two classes each


def test_seeded_reproducible_and_seed_dependent():
    y = _labels()
    a = dirichlet_shards(y, 6, 0.3, seed=1, min_size=4)
    b = dirichlet_shards(y, 6, 0.3, seed=1, min_size=4)
    c = dirichlet_shards(y, 6, 0.3, seed=2, min_size=4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not all(torch.equal(u, v) for u, v in zip(a, c))


def test_the_partition_never_touches_the_global_torch_stream():
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    dirichlet_shards(_labels(), 4, 0.1, seed=0, min_size=2)
    assert torch.equal(torch.rand(3), before)


def test_tiny_shards_are_topped_up_to_the_minimum():
    y = _labels(per_class=50)
    shards = dirichlet_shards(y, 16, 0.01, seed=0, min_size=10)  # more learners than classes: some start empty
    assert min(s.numel() for s in shards) >= 10
    assert torch.equal(torch.cat(shards).sort().values, torch.arange(y.numel()))


def test_learner_j_draws_only_from_shard_j_and_is_a_pure_function_of_step():
    y = _labels(per_class=30)
    shards = dirichlet_shards(y, 5, 0.2, seed=0, min_size=7)
    stream = ShardStream(shards, 7, seed=4)
    for step in range(0, 40, 3):
        idx = stream.indices(step, range(5))
        assert idx.shape == (5, 7)
        for a in range(5):
            assert set(idx[a].tolist()) <= set(shards[a].tolist())
    fresh = ShardStream(shards, 7, seed=4)
    assert torch.equal(fresh.indices(33, [2, 4]), stream.indices(33, range(5))[[2, 4]])
    # one pass over a shard (a round) is a permutation of it
    a, size = 1, shards[1].numel()
    steps = -(-size // 7) + 1
    seen = torch.cat([stream.learner_indices(s, a) for s in range(steps)])[:size]
    assert sorted(seen.tolist()) == shards[a].tolist()


def test_bad_alpha_is_one_config_error():
    with pytest.raises(ConfigError, match="--dirichlet-alpha"):
        dirichlet_shards(_labels(), 4, 0.0, seed=0)
    with pytest.raises(ConfigError, match="--dirichlet-alpha"):
        TrainConfig(dirichlet_alpha=-1.0).validate()


def _cfg(tmp_path, name, **kw):
    base = dict(learners=4, batch_size=10, epochs=2, lr=0.1, stop_loss=None, progress=False, clock=False,
                train_per_class=40, test_per_class=10, hidden=[8], out=str(tmp_path / name))
    return TrainConfig(**{**base, **kw})


def test_iid_partition_is_todays_stream(tmp_path):
    """--partition iid draws exactly the shared-permutation stream (every existing number unchanged)."""
    cfg = _cfg(tmp_path, "iid", partition="iid")
    from ddl.loop.train import Trainer

    tr = Trainer(cfg)
    assert type(tr.stream) is MinibatchStream
    ref = MinibatchStream(tr.data.n_train, 4, 10, 0)
    assert all(torch.equal(tr.stream.indices(s, range(4)), ref.indices(s, range(4))) for s in range(12))
    assert not (tmp_path / "iid" / "partition.json").exists()


def test_dirichlet_run_writes_histograms(tmp_path):
    res = train(_cfg(tmp_path, "dir", partition="dirichlet", dirichlet_alpha=0.1, algo="dpsgd"))
    assert res.status == "max_epochs"
    part = json.loads((tmp_path / "dir" / "partition.json").read_text())
    assert len(part["histograms"]) == 4 and part["classes"] == 10
    assert [sum(h) for h in part["histograms"]] == part["shard_sizes"]
    assert sum(part["shard_sizes"]) == 400
    from ddl.report.comparison import build_report

    build_report([tmp_path / "dir"], tmp_path / "report")
    assert (tmp_path / "report" / "partition.png").is_file()
