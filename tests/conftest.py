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
