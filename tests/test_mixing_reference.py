"""DPSGD's neighbour averaging against a mixing matrix written out by hand (not the code's own ``ring(n)``)."""

import copy

import torch
import torch.nn.functional as F

from ddl.algorithms import Mixer
from ddl.algorithms.topology import ring
from ddl.comm import SimCollective
from ddl.compute.flat import FlatSpec
from ddl.config import TrainConfig
from ddl.data import load_dataset
from ddl.loop.train import Trainer

t = 1 / 3
# ring of 5: learner a averages a-1, a, a+1 (mod 5) with weight 1/3 each
RING5 = torch.tensor([
    [t, t, 0, 0, t],
    [t, t, t, 0, 0],
    [0, t, t, t, 0],
    [0, 0, t, t, t],
    [t, 0, 0, t, t],
], dtype=torch.float64)  # fmt: skip


def test_ring5_mixing_equals_hand_written_matrix():
    W = torch.randn(5, 300, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mixer = Mixer(ring(5), SimCollective(5))
    mixed = mixer.finish(W, mixer.start(W))
    torch.testing.assert_close(mixed, RING5 @ W, rtol=0, atol=1e-14)
    assert ring(5).neighbours(0) == [0, 1, 4] and ring(5).neighbours(2) == [1, 2, 3]


def test_dpsgd_ring5_steps_equal_hand_written_update(tmp_path):
    """w_a ← Σ_j RING5[a, j] w_j − α ∇L_{μ_a}(w_a), with the gradients of separate nn.Modules."""
    data = load_dataset("mnist5k", train_per_class=20, test_per_class=5)
    cfg = TrainConfig(algo="dpsgd", learners=5, batch_size=8, lr=0.3, topology="ring", dtype="float64",
                      progress=False, out=str(tmp_path / "r"))
    tr = Trainer(cfg, data=data)
    models = [copy.deepcopy(tr.model) for _ in range(5)]
    spec = FlatSpec.of(tr.model)
    for step in range(3):
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, cfg.lr, 0.0)
        ws, gs = [], []
        for a, m in enumerate(models):
            m.zero_grad()
            F.cross_entropy(m(xs[a]), ys[a]).backward()
            gs.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]))
            ws.append(spec.flatten(m))
        new = RING5 @ torch.stack(ws) - cfg.lr * torch.stack(gs)
        for a, m in enumerate(models):
            spec.load(m, new[a])
        torch.testing.assert_close(tr.state.W, new, rtol=0, atol=1e-12)
    assert (tr.state.W - tr.state.W.mean(0)).abs().max() > 1e-4  # the learners really differ: mixing mattered
