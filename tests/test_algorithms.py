"""SSGD and DPSGD against plain, obviously-correct single-model implementations (docs/theory.md §7)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from ddl.algorithms import Mixer
from ddl.algorithms.topology import complete, make_topology, ring
from ddl.comm import SimCollective
from ddl.compute.flat import FlatSpec
from ddl.loop.train import Trainer


def run_steps(cfg, k):
    """Trainer after k steps, with the weights after every step."""
    tr = Trainer(cfg)
    steps_per_epoch = tr.stream.steps_per_epoch
    ws = []
    for step in range(k):
        xs, ys = tr.batch(step)
        wd_on = step // steps_per_epoch < (cfg.wd_stop_epoch or 10**9)
        tr.algo.step(tr.state, xs, ys, cfg.lr, cfg.weight_decay if wd_on else 0)
        ws.append(tr.state.W.clone())
    return tr, ws


@pytest.mark.parametrize("momentum,wd", [(0.0, 0.0), (0.9, 5e-3)])
def test_ssgd_n_learners_equals_large_batch_torch_sgd(small_cfg, momentum, wd):
    k = 12
    cfg = small_cfg(algo="ssgd", learners=4, batch_size=25, lr=0.1, momentum=momentum, weight_decay=wd)
    tr, ws = run_steps(cfg, k)
    # oracle: one nn.Module, torch.optim.SGD, batch 100 = the union of the 4 learners' minibatches
    single = small_cfg(algo="ssgd", learners=1, batch_size=100, lr=0.1, momentum=momentum, weight_decay=wd)
    ref = Trainer(single)
    model = copy.deepcopy(ref.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=momentum, weight_decay=wd)
    spec = FlatSpec.of(model)
    for step in range(k):
        idx = ref.stream.indices(step, [0])[0]
        union = tr.stream.indices(step, range(4)).flatten()
        assert torch.equal(idx, union)
        opt.zero_grad()
        F.cross_entropy(model(ref.x_train[idx]), ref.y_train[idx]).backward()
        opt.step()
        w = spec.flatten(model)
        for a in range(4):
            assert (ws[step][a] - w).abs().max() <= 1e-6, f"step {step} learner {a}"


@pytest.mark.parametrize("algo", ["ssgd", "dpsgd"])
@pytest.mark.parametrize("mode", ["vmap", "auto"])
def test_mlp_vectorized_step_equals_loop_oracle(small_cfg, algo, mode):
    a, wa = run_steps(small_cfg(algo=algo, learners=4, batch_size=10, sim_mode=mode), 5)
    b, wb = run_steps(small_cfg(algo=algo, learners=4, batch_size=10, sim_mode="loop"), 5)
    for x, y in zip(wa, wb):
        assert (x - y).abs().max() <= 1e-6


def dpsgd_oracle(cfg, topology, k):
    """DPSGD written the slow way: one nn.Module per learner, neighbour average by an explicit double loop."""
    tr = Trainer(cfg)
    n = cfg.learners
    models = [copy.deepcopy(tr.model) for _ in range(n)]
    spec = FlatSpec.of(tr.model)
    bufs = [torch.zeros(spec.numel, dtype=tr.dtype) for _ in range(n)]
    out = []
    for step in range(k):
        idx = tr.stream.indices(step, range(n))
        grads, ws = [], []
        for a, m in enumerate(models):
            m.train()
            m.zero_grad()
            F.cross_entropy(m(tr.x_train[idx[a]]), tr.y_train[idx[a]]).backward()
            g = torch.cat([p.grad.reshape(-1) for p in m.parameters()])
            w = spec.flatten(m)
            g = g + cfg.weight_decay * w
            bufs[a] = cfg.momentum * bufs[a] + g
            grads.append(bufs[a] if cfg.momentum else g)
            ws.append(w)
        for a, m in enumerate(models):
            M = topology.matrix_at(step)
            mixed = sum(float(M[a, j]) * ws[j] for j in range(n))
            spec.load(m, mixed - cfg.lr * grads[a])
        out.append(torch.stack([spec.flatten(m) for m in models]))
    return out


# every topology, each update path (plain: gradient written inside the mixing; momentum: into the buffer) on
# the ring and the complete graph and one of them on each other graph (CI time)
@pytest.mark.parametrize("topo,momentum", [("ring", 0.0), ("ring", 0.9), ("complete", 0.0), ("complete", 0.9),
                                           ("torus", 0.9), ("exponential", 0.0), ("one-peer-exponential", 0.9)])
def test_dpsgd_equals_per_learner_oracle(small_cfg, topo, momentum):
    cfg = small_cfg(algo="dpsgd", learners=6, batch_size=10, lr=0.2, topology=topo, momentum=momentum,
                    weight_decay=1e-3)
    _, ws = run_steps(cfg, 8)
    ref = dpsgd_oracle(cfg, make_topology(topo, 6), 8)
    for step, (x, y) in enumerate(zip(ws, ref)):
        assert (x - y).abs().max() <= 1e-6, step
    assert (ws[-1] - ws[-1].mean(0)).abs().max() > 1e-4 or topo == "complete"  # learners really differ


def test_dpsgd_ring_of_three_equals_complete_graph(small_cfg):
    _, a = run_steps(small_cfg(algo="dpsgd", learners=3, batch_size=10, topology="ring"), 10)
    _, b = run_steps(small_cfg(algo="dpsgd", learners=3, batch_size=10, topology="complete"), 10)
    for x, y in zip(a, b):
        assert (x - y).abs().max() <= 1e-6


@pytest.mark.parametrize("n", [2, 5, 8, 16])
def test_mixing_preserves_average(n):
    torch.manual_seed(n)
    W = torch.randn(n, 1000, dtype=torch.float64)
    mixer = Mixer(ring(n), SimCollective(n))
    mixed = mixer.finish(W, mixer.start(W))
    assert torch.allclose(mixed.mean(0), W.mean(0), atol=1e-12)
    # and it is M @ W
    assert torch.allclose(mixed, ring(n).matrix @ W, atol=1e-12)


def test_topologies_doubly_stochastic():
    for t in (ring(7), complete(7), ring(2), ring(1)):
        M = t.matrix
        assert torch.allclose(M, M.T)
        assert torch.allclose(M.sum(0), torch.ones(t.n, dtype=M.dtype))
        assert torch.allclose(M.sum(1), torch.ones(t.n, dtype=M.dtype))
    assert ring(7).neighbours(0) == [0, 1, 6]
    assert 0 < ring(16).spectral_gap < complete(16).spectral_gap == pytest.approx(1.0)


@pytest.mark.parametrize("algo", ["ssgd", "dpsgd"])
def test_vmap_equals_loop_resnet18_with_batchnorm(trainers_after_steps, algo):
    """The vectorized learner step equals the per-learner loop on ResNet-18 (BatchNorm per learner)."""
    trs = trainers_after_steps((3, 8, 8), ("vmap", "loop"), 2, algo=algo, learners=3, batch_size=4, lr=0.05,
                               model="resnet18", dtype="float64", momentum=0.9)  # fmt: skip
    res = {mode: tr.state for mode, tr in trs.items()}
    a, b = res["vmap"], res["loop"]
    assert (a.W - b.W).abs().max() <= 1e-8
    for k in a.buffers:
        assert torch.allclose(a.buffers[k].double(), b.buffers[k].double(), atol=1e-8), k
    # learners keep their own BatchNorm statistics
    rm = a.buffers["bn1.running_mean"]
    assert (rm[0] - rm[1]).abs().max() > 0


@pytest.mark.parametrize("algo", ["ssgd", "dpsgd"])
def test_step_reuses_the_previous_weights_only_when_nobody_holds_them(small_cfg, algo):
    """The new weights go into the storage of the weights two steps back (no fresh [m, P] tensor per step),
    unless someone kept a reference or a view: then those weights stay untouched."""
    tr = Trainer(small_cfg(algo=algo, learners=4, batch_size=10))
    ptrs = []
    for step in range(4):
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, 0.1, 0.0)
        ptrs.append(tr.state.W.data_ptr())
    assert ptrs[2] == ptrs[0] and ptrs[3] == ptrs[1] and ptrs[0] != ptrs[1]
    kept, kept_view = tr.state.W, None
    copy = kept.clone()
    for step in range(4, 7):
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, 0.1, 0.0)
        if step == 4:
            kept_view, kept = kept[1], None  # only a view of the old weights remains
    assert torch.equal(kept_view, copy[1])
    kept = tr.state.W  # a plain reference held over two steps
    copy = kept.clone()
    for step in range(7, 10):
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, 0.1, 0.0)
    assert torch.equal(kept, copy)
