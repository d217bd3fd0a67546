"""Mixing matrices against hand-written ones, their spectra against a dense eigen-solver, the registry."""

import math

import pytest
import torch

from ddl.algorithms.topology import TOPOLOGIES, complete, exponential, make_topology, one_peer_exponential, ring, torus
from ddl.config import ConfigError, TrainConfig


def literal(rows, scale):
    return torch.tensor(rows, dtype=torch.float64) * scale


def test_ring_of_five():
    t = 1 / 3
    expect = torch.tensor([
        [t, t, 0, 0, t],
        [t, t, t, 0, 0],
        [0, t, t, t, 0],
        [0, 0, t, t, t],
        [t, 0, 0, t, t],
    ], dtype=torch.float64)
    assert torch.equal(ring(5).matrix_at(0), expect)
    assert torch.equal(ring(5).matrix_at(17), expect)  # static: the step is ignored
    assert ring(7).neighbours(0) == [0, 1, 6]
    assert torch.equal(ring(2).matrix, literal([[1, 1], [1, 1]], 0.5))
    assert torch.equal(ring(1).matrix, literal([[1]], 1.0))


def test_torus_two_by_three():
    # learner a at (a // 3, a % 3); the up and down neighbours coincide on two rows: 4 neighbours, 1/4 each
    expect = literal([
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 0, 1, 0],
        [1, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 1, 1],
        [0, 1, 0, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
    ], 0.25)
    t = torus(6)
    assert (t.rows, t.cols) == (2, 3)
    assert torch.equal(t.matrix_at(0), expect)
    assert t.neighbours(4) == [1, 3, 4, 5]


def test_torus_three_by_three():
    expect = literal([
        [1, 1, 1, 1, 0, 0, 1, 0, 0],
        [1, 1, 1, 0, 1, 0, 0, 1, 0],
        [1, 1, 1, 0, 0, 1, 0, 0, 1],
        [1, 0, 0, 1, 1, 1, 1, 0, 0],
        [0, 1, 0, 1, 1, 1, 0, 1, 0],
        [0, 0, 1, 1, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 1, 1, 1],
        [0, 1, 0, 0, 1, 0, 1, 1, 1],
        [0, 0, 1, 0, 0, 1, 1, 1, 1],
    ], 0.2)
    assert torch.equal(torus(9).matrix, expect)
    # λ = (1 + 2cos(2πk/3) + 2cos(2πl/3)) / 5: |λ₂| = 2/5
    assert torus(9).spectral_gap == pytest.approx(0.6, abs=1e-12)


def test_torus_shape_and_prime_n_is_the_ring():
    assert [(torus(n).rows, torus(n).cols) for n in (4, 12, 16, 18, 64, 1024)] == [
        (2, 2), (3, 4), (4, 4), (3, 6), (8, 8), (32, 32)]
    t = torus(7)
    assert (t.rows, t.cols) == (1, 7)
    assert torch.equal(t.matrix, ring(7).matrix)
    assert t.describe()["grid"] == [1, 7]


def test_a_torus_of_a_prime_n_is_refused_in_one_line():
    from ddl.config import TrainConfig

    with pytest.raises(ConfigError, match=r"^--topology torus: n = 7 learners .* is prime.*--topology ring"):
        TrainConfig(algo="dpsgd", learners=7, topology="torus").validate()
    TrainConfig(algo="dpsgd", learners=6, topology="torus").validate()  # 2 × 3: a torus
    TrainConfig(algo="ssgd", learners=7, topology="torus").validate()  # SSGD mixes over no topology


def test_exponential_eight():
    # Ying et al. 2021: a averages a, a+1, a+2, a+4 (mod 8), 1/4 each
    expect = literal([
        [1, 1, 1, 0, 1, 0, 0, 0],
        [0, 1, 1, 1, 0, 1, 0, 0],
        [0, 0, 1, 1, 1, 0, 1, 0],
        [0, 0, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 0, 1, 1, 1, 0],
        [0, 1, 0, 0, 0, 1, 1, 1],
        [1, 0, 1, 0, 0, 0, 1, 1],
        [1, 1, 0, 1, 0, 0, 0, 1],
    ], 0.25)
    t = exponential(8)
    assert torch.equal(t.matrix, expect)
    assert not t.time_varying
    assert t.neighbours(6) == [0, 2, 6, 7]
    # λ_k = (1 + ω^k + ω^2k + ω^4k)/4; k = 4 gives 1/2, the largest modulus below 1
    assert t.spectral_gap == pytest.approx(0.5, abs=1e-12)
    assert exponential(5).degree() == 4  # hops 1, 2, 4 (τ = ⌈log₂ 5⌉ = 3) and itself


def test_one_peer_exponential_eight_steps():
    t = one_peer_exponential(8)
    assert t.time_varying and t.period == 3
    expect = {
        0: literal([[1, 1, 0, 0, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0],
                    [0, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 0, 1, 1, 0],
                    [0, 0, 0, 0, 0, 0, 1, 1], [1, 0, 0, 0, 0, 0, 0, 1]], 0.5),
        1: literal([[1, 0, 1, 0, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0, 0, 0],
                    [0, 0, 0, 1, 0, 1, 0, 0], [0, 0, 0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1, 0, 1],
                    [1, 0, 0, 0, 0, 0, 1, 0], [0, 1, 0, 0, 0, 0, 0, 1]], 0.5),
        2: literal([[1, 0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 1, 0],
                    [0, 0, 0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1, 0, 0],
                    [0, 0, 1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 0, 0, 0, 1]], 0.5),
    }
    for step in range(7):
        assert torch.equal(t.matrix_at(step), expect[step % 3]), step
    assert t.neighbours(3, step=1) == [3, 5] and t.neighbours(3, step=4) == [3, 5]
    with pytest.raises(ValueError, match="time-varying"):
        _ = t.matrix
    # a power of two: one period averages exactly (Ying et al.), gap 1
    product = expect[2] @ expect[1] @ expect[0]
    assert torch.allclose(product, torch.full((8, 8), 1 / 8, dtype=torch.float64), atol=1e-15)
    assert t.spectral_gap == pytest.approx(1.0, abs=1e-12)


def test_complete():
    assert torch.equal(complete(4).matrix, torch.full((4, 4), 0.25, dtype=torch.float64))
    assert complete(4).is_complete and not ring(4).is_complete
    assert complete(16).spectral_gap == pytest.approx(1.0)


ALL_N = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 16, 30]


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_doubly_stochastic_average_preserved_and_neighbours(name):
    for n in ALL_N:
        t = make_topology(name, n)
        for step in range(t.period + 1):
            M = t.matrix_at(step)
            ones = torch.ones(n, dtype=torch.float64)
            assert torch.allclose(M.sum(0), ones, atol=1e-14) and torch.allclose(M.sum(1), ones, atol=1e-14)
            assert (M >= 0).all()
            W = torch.randn(n, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
            assert torch.allclose((M @ W).mean(0), W.mean(0), atol=1e-13)
            for a in range(n):
                assert t.neighbours(a, step) == torch.nonzero(M[a]).flatten().tolist()
                assert a in t.neighbours(a, step)


@pytest.mark.parametrize("name", list(TOPOLOGIES))
def test_spectrum_by_fourier_equals_dense_eigensolver(name):
    """The O(n log n) eigenvalues and the period product's gap against torch.linalg on the dense matrices."""
    for n in [2, 3, 5, 6, 8, 9, 12, 16, 20]:
        t = make_topology(name, n)
        for step in range(t.period):
            fast = t.eigenvalues(step).flatten()
            dense = torch.linalg.eigvals(t.matrix_at(step))
            assert torch.allclose(fast.abs().sort().values, dense.abs().sort().values, atol=1e-10)
            # every Fourier eigenvalue is an eigenvalue of the matrix (as a set; moduli above fix multiplicity)
            assert (fast[:, None] - dense[None, :]).abs().min(1).values.max() < 1e-9
        P = torch.eye(n, dtype=torch.float64)
        for step in range(t.period):
            P = t.matrix_at(step) @ P
        # the product is normal (circulant): its singular values are |λ|; an exact average leaves rounding only
        s2 = float(torch.linalg.svdvals(P)[1])
        s2 = 0.0 if s2 < 1e-12 else s2
        assert t.spectral_gap == pytest.approx(1 - s2, abs=1e-10)
        assert t.spectral_gap_per_step == pytest.approx(1 - s2 ** (1 / t.period), abs=1e-10)


def test_spectral_gaps_known_values():
    assert ring(16).spectral_gap == pytest.approx(1 - (1 + 2 * math.cos(2 * math.pi / 16)) / 3, abs=1e-12)
    assert ring(1).spectral_gap == 1.0
    assert 0 < ring(64).spectral_gap < torus(64).spectral_gap < exponential(64).spectral_gap < 1
    d = one_peer_exponential(6).describe()
    assert d["period"] == 3 and d["degree"] == [2, 2, 2] and d["time_varying"]
    assert 0 < d["spectral_gap_per_step"] <= d["spectral_gap"] < 1  # 6 is no power of two: not exact


def test_registry_drives_config_and_errors():
    assert TrainConfig.__dataclass_fields__["topology"].metadata["choices"] == tuple(TOPOLOGIES)
    TrainConfig(algo="dpsgd", topology="one-peer-exponential").validate()
    with pytest.raises(ConfigError, match="^--topology: 'star' is not one of ring, torus, exponential"):
        TrainConfig(algo="dpsgd", topology="star").validate()
    with pytest.raises(ConfigError, match="unknown topology .star."):
        make_topology("star", 4)


def test_run_directory_records_the_graph(small_cfg):
    import json

    from ddl.loop.train import train

    res = train(small_cfg(algo="dpsgd", learners=6, batch_size=10, topology="torus", train_per_class=12))
    mixing = json.loads((res.out / "config.json").read_text())["mixing"]
    assert mixing["name"] == "torus" and mixing["grid"] == [2, 3] and mixing["degree"] == [4]
    # M = [[J, I], [I, J]] / 4 with J the 3×3 ones: eigenvalues (3 ± 1)/4, 1/4 and −1/4 → |λ₂| = 1/2
    assert mixing["spectral_gap"] == pytest.approx(0.5, abs=1e-12)
    assert json.loads((res.out / "summary.json").read_text())["spectral_gap"] == pytest.approx(0.5, abs=1e-12)
    from ddl.rundir.layout import load_run

    assert load_run(res.out).config.topology == "torus"
