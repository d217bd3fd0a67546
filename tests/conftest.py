import os

import pytest
import torch

# two cores: keep intra-op threads fixed so timings and reductions are stable
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def mnist5k():
    from ddl.data import load_dataset

    return load_dataset("mnist5k")


@pytest.fixture
def small_cfg(tmp_path):
    """A factory of small, fast training configs writing under tmp_path."""
    from ddl.config import TrainConfig

    def make(**kw):
        base = dict(epochs=1, progress=False, out=str(tmp_path / kw.pop("name", "run")), overwrite=True,
                    train_per_class=40, test_per_class=20)
        base.update(kw)
        return TrainConfig(**base)

    return make


@pytest.fixture
def trainers_after_steps(tmp_path):
    """``run(shape, modes, steps, **cfg)``: one trainer per ``sim_mode`` in ``modes``, each after ``steps`` learner
    steps (no weight decay) on the same seeded synthetic data of image shape ``shape`` (24 training images) —
    for comparing the simulator's learner paths against each other."""
    from ddl.config import TrainConfig
    from ddl.data import Dataset
    from ddl.loop.train import Trainer

    def run(shape, modes, steps, **cfg):
        g = torch.Generator().manual_seed(0)
        n_tr = 24
        data = Dataset("synthetic", torch.randn(n_tr, *shape, generator=g),
                       torch.randint(0, 10, (n_tr,), generator=g), torch.randn(8, *shape, generator=g),
                       torch.randint(0, 10, (8,), generator=g), torch.ones(n_tr, dtype=torch.bool),
                       torch.zeros(n_tr, dtype=torch.long), 10)  # fmt: skip
        out = {}
        for mode in modes:
            c = TrainConfig(**cfg, sim_mode=mode, progress=False, out=str(tmp_path / mode))
            tr = Trainer(c, data=data)
            for step in range(steps):
                xs, ys = tr.batch(step)
                tr.algo.step(tr.state, xs, ys, c.lr, 0.0)
            out[mode] = tr
        return out

    return run
