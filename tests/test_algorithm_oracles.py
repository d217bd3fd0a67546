"""local SGD, Gossip-PGA, gradient tracking and CHOCO-SGD against per-learner loops written from their papers'
pseudo-code (docs/theory.md §7.1): one nn.Module per learner, lists of flat tensors, mixing by an explicit double
loop over a mixing matrix written out by hand; and the identities that tie them to SSGD and DPSGD."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from ddl.compute.flat import FlatSpec
from ddl.compute.stream import _mix
from ddl.errors import ConfigError
from ddl.loop.train import Trainer


def ring_matrix(n: int) -> list[list[float]]:
    """Ring of n ≥ 4 learners, written out: a averages a−1, a, a+1 with weight 1/3 each."""
    return [[1 / 3 if (j - a) % n in (0, 1, n - 1) else 0.0 for j in range(n)] for a in range(n)]


def run_steps(cfg, k):
    tr = Trainer(cfg.validate())
    ws = []
    for step in range(k):
        xs, ys = tr.batch(step)
        tr.algo.step(tr.state, xs, ys, cfg.lr, cfg.weight_decay)
        ws.append(tr.state.W.clone())
    return tr, ws


class Learners:
    """n separate nn.Modules; ``grad(a, w, step)``: learner a's minibatch gradient at flat weights w, plus the
    weight decay β w (l2sq)."""

    def __init__(self, cfg):
        self.cfg, self.tr = cfg, Trainer(cfg)
        self.models = [copy.deepcopy(self.tr.model) for _ in range(cfg.learners)]
        self.spec = FlatSpec.of(self.tr.model)
        self.w0 = self.spec.flatten(self.tr.model)

    def grad(self, a, w, step):
        m = self.models[a]
        self.spec.load(m, w)
        m.train()
        m.zero_grad()
        idx = self.tr.stream.indices(step, [a])[0]
        F.cross_entropy(m(self.tr.x_train[idx]), self.tr.y_train[idx]).backward()
        return torch.cat([p.grad.reshape(-1) for p in m.parameters()]) + self.cfg.weight_decay * w


def local_sgd_oracle(cfg, k, mixing=None):
    """Local SGD (Stich 2019, Alg. 1) with heavy-ball momentum; with ``mixing`` (a matrix) Gossip-PGA (Chen et
    al. 2021): the DPSGD step between the averages."""
    L, n = Learners(cfg), cfg.learners
    w = [L.w0.clone() for _ in range(n)]
    u = [torch.zeros_like(L.w0) for _ in range(n)]
    out = []
    for t in range(k):
        for a in range(n):
            u[a] = cfg.momentum * u[a] + L.grad(a, w[a], t)
        average = (t + 1) % cfg.period == 0
        if mixing is None or average:
            w = [w[a] - cfg.lr * u[a] for a in range(n)]
        else:
            w = [sum(mixing[a][j] * w[j] for j in range(n)) - cfg.lr * u[a] for a in range(n)]
        if average:
            w_bar, u_bar = sum(w) / n, sum(u) / n
            w = [w_bar.clone() for _ in range(n)]
            u = [u_bar.clone() for _ in range(n)]
        out.append(torch.stack(w))
    return out


def gradient_tracking_oracle(cfg, k, mixing):
    """DIGing (Nedić et al. 2017): x ← M x − α y;  y ← M y + g(x_new) − g(x_old), y(0) = g(x(0))."""
    L, n = Learners(cfg), cfg.learners
    x = [L.w0.clone() for _ in range(n)]
    g = [L.grad(a, x[a], 0) for a in range(n)]
    y = [gi.clone() for gi in g]
    out = []
    for t in range(k):
        x = [sum(mixing[a][j] * x[j] for j in range(n)) - cfg.lr * y[a] for a in range(n)]
        out.append(torch.stack(x))
        g_new = [L.grad(a, x[a], t + 1) for a in range(n)]
        y = [sum(mixing[a][j] * y[j] for j in range(n)) + g_new[a] - g[a] for a in range(n)]
        g = g_new
    return out


def compress(kind, ratio, v, seed, step, learner):
    """Q(v) of one learner's row, written from the definitions (Stich et al. 2018; Alistarh et al. 2017 with
    Koloskova et al.'s 1/τ); the quantiser's uniforms come from the stream (seed, step, learner)."""
    P = v.numel()
    if kind == "none":
        return v.clone()
    if kind == "topk":
        k = max(1, math.ceil(ratio * P))
        keep = sorted(range(P), key=lambda i: -abs(float(v[i])))[:k]
        q = torch.zeros_like(v)
        q[keep] = v[keep]
        return q
    bits = round(ratio * 8 * v.element_size())
    s = 2 ** (bits - 1) - 1
    tau = 1 + min(P / s**2, math.sqrt(P) / s)
    norm = float(v.norm())
    g = torch.Generator().manual_seed(_mix(seed, 0xC40C0, step, learner))
    u = torch.rand(P, generator=g, dtype=v.dtype)
    q = torch.zeros_like(v)
    for i in range(P):
        r = abs(float(v[i])) / norm * s
        xi = math.floor(r) + (1 if float(u[i]) < r - math.floor(r) else 0)
        q[i] = norm * math.copysign(1, float(v[i])) * xi / (s * tau) if v[i] != 0 else 0.0
    return q


def choco_oracle(cfg, k, mixing):
    """CHOCO-SGD (Koloskova et al. 2019, Alg. 1, the consensus step on w(t) as in docs/theory.md §7.1): learner i
    keeps its own copy x̂_j of every neighbour j's public weights, updated with the q_j it receives."""
    L, n = Learners(cfg), cfg.learners
    x = [L.w0.clone() for _ in range(n)]
    u = [torch.zeros_like(L.w0) for _ in range(n)]
    hat = [{j: torch.zeros_like(L.w0) for j in range(n) if mixing[i][j]} for i in range(n)]
    out = []
    for t in range(k):
        q = [compress(cfg.compressor, cfg.compress_ratio, x[i] - hat[i][i], cfg.seed, t, i) for i in range(n)]
        for i in range(n):
            for j in hat[i]:
                hat[i][j] = hat[i][j] + q[j]
        for i in range(n):
            u[i] = cfg.momentum * u[i] + L.grad(i, x[i], t)
        x = [x[i] + cfg.consensus_step * sum(mixing[i][j] * (hat[i][j] - hat[i][i]) for j in hat[i])
             - cfg.lr * u[i] for i in range(n)]
        out.append(torch.stack(x))
    return out


def assert_close_steps(ws, ref, tol=1e-6):
    worst = max(float((x - y).abs().max()) for x, y in zip(ws, ref))
    assert worst <= tol, worst
    return worst


BASE = dict(learners=5, batch_size=8, lr=0.2, dtype="float64", topology="ring")


@pytest.mark.parametrize("period,momentum,wd", [(3, 0.9, 1e-3), (2, 0.0, 0.0)])
def test_local_sgd_equals_oracle(small_cfg, period, momentum, wd):
    cfg = small_cfg(algo="local_sgd", period=period, momentum=momentum, weight_decay=wd, **BASE)
    _, ws = run_steps(cfg, 7)
    assert_close_steps(ws, local_sgd_oracle(cfg, 7))
    assert (ws[-1] - ws[-1].mean(0)).abs().max() > 1e-5  # step 7 is no averaging step: learners differ


@pytest.mark.parametrize("period,momentum,wd", [(3, 0.9, 1e-3), (4, 0.0, 0.0)])
def test_gossip_pga_equals_oracle(small_cfg, period, momentum, wd):
    cfg = small_cfg(algo="gossip_pga", period=period, momentum=momentum, weight_decay=wd, **BASE)
    _, ws = run_steps(cfg, 7)
    assert_close_steps(ws, local_sgd_oracle(cfg, 7, mixing=ring_matrix(5)))


@pytest.mark.parametrize("wd", [0.0, 1e-3])
def test_gradient_tracking_equals_oracle(small_cfg, wd):
    cfg = small_cfg(algo="gradient_tracking", weight_decay=wd, **BASE)
    _, ws = run_steps(cfg, 6)
    assert_close_steps(ws, gradient_tracking_oracle(cfg, 6, ring_matrix(5)))


@pytest.mark.parametrize("compressor,ratio,gamma,momentum", [("topk", 0.1, 0.5, 0.9), ("qsgd", 0.125, 0.4, 0.0),
                                                            ("none", 1.0, 0.7, 0.5)])
def test_choco_equals_oracle(small_cfg, compressor, ratio, gamma, momentum):
    cfg = small_cfg(algo="choco", compressor=compressor, compress_ratio=ratio, consensus_step=gamma,
                    momentum=momentum, weight_decay=1e-3, train_per_class=8, **BASE)
    _, ws = run_steps(cfg, 4)
    assert_close_steps(ws, choco_oracle(cfg, 4, ring_matrix(5)))


# ---- identities ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", ["local_sgd", "gossip_pga"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_period_one_is_ssgd(small_cfg, algo, dtype):
    kw = dict(learners=4, batch_size=10, lr=0.1, momentum=0.9, weight_decay=5e-3, dtype=dtype)
    _, a = run_steps(small_cfg(algo=algo, period=1, name="a", **kw), 10)
    _, b = run_steps(small_cfg(algo="ssgd", name="b", **kw), 10)
    worst = assert_close_steps(a, b)
    print(f"{algo} H=1 vs SSGD {dtype}: max |Δw| = {worst:.2e}")


@pytest.mark.parametrize("compressor,ratio", [("none", 1.0), ("topk", 1.0)])
@pytest.mark.parametrize("topology", ["ring", "torus", "complete"])
def test_choco_uncompressed_is_dpsgd(small_cfg, compressor, ratio, topology):
    kw = dict(learners=6, batch_size=10, lr=0.1, momentum=0.9, weight_decay=5e-3, topology=topology)
    _, a = run_steps(small_cfg(algo="choco", compressor=compressor, compress_ratio=ratio, name="a", **kw), 10)
    _, b = run_steps(small_cfg(algo="dpsgd", name="b", **kw), 10)
    worst = assert_close_steps(a, b)
    print(f"choco {compressor} r={ratio} {topology} vs DPSGD: max |Δw| = {worst:.2e}")


def test_gossip_pga_between_averages_is_dpsgd(small_cfg):
    kw = dict(learners=5, batch_size=10, lr=0.1, momentum=0.9, weight_decay=5e-3)
    _, a = run_steps(small_cfg(algo="gossip_pga", period=100, name="a", **kw), 6)
    _, b = run_steps(small_cfg(algo="dpsgd", name="b", **kw), 6)
    assert_close_steps(a, b)


def test_gradient_tracking_mean_moves_like_dpsgd_mean_gradient(small_cfg):
    """The trackers' average is the average gradient (M doubly stochastic): ȳ(t) = ḡ(t)."""
    tr, _ = run_steps(small_cfg(algo="gradient_tracking", **BASE), 4)
    y, g = tr.state.rows["tracker"], tr.state.rows["last_grad"]
    assert (y.mean(0) - g.mean(0)).abs().max() <= 1e-12
    assert (y - g).abs().max() > 1e-6  # but not learner by learner


def test_bad_algorithm_options_are_config_errors(small_cfg):
    with pytest.raises(ConfigError, match="--momentum"):
        Trainer(small_cfg(algo="gradient_tracking", momentum=0.9).validate())
    with pytest.raises(ConfigError, match="--compress-ratio"):
        small_cfg(algo="choco", compressor="none", compress_ratio=0.5).validate()
    with pytest.raises(ConfigError, match="--compress-ratio"):
        small_cfg(algo="choco", compressor="qsgd", compress_ratio=0.01).validate()
    with pytest.raises(ConfigError, match="--topology"):
        Trainer(small_cfg(algo="choco", topology="one-peer-exponential", learners=4).validate())
    with pytest.raises(ConfigError, match="--period"):
        small_cfg(algo="local_sgd", period=0).validate()


@pytest.mark.parametrize("compressor,ratio,want", [
    ("topk", 0.1, 2472 * (4 + 4)),  # ⌈0.1 · 24 720⌉ values and their 32-bit indices
    ("qsgd", 0.125, 4 + 24_720 * 4 // 8),  # one norm + 4 bits per entry
    ("none", 1.0, 24_720 * 4),
])
def test_metrics_record_the_compressed_message_size(small_cfg, compressor, ratio, want):
    from ddl.loop.train import train
    from ddl.rundir.layout import load_run

    res = train(small_cfg(algo="choco", learners=4, batch_size=10, compressor=compressor, compress_ratio=ratio,
                          train_per_class=10, test_per_class=5))
    assert {r["message_bytes"] for r in load_run(res.out).metrics()} == {want}
    assert "message_bytes" not in load_run(train(small_cfg(name="ssgd", learners=2, train_per_class=10,
                                                           test_per_class=5)).out).metrics()[0]
