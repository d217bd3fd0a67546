"""Each algorithm declares what it communicates and how its runs are shown; the experiment key, the report's
labels and baseline follow the declarations (a hypothetical algorithm registered here is treated by them alone)."""

from __future__ import annotations

import pytest

from ddl import algorithms
from ddl.algorithms import (
    ALGORITHM_FIELDS,
    ALGORITHMS,
    BASELINE,
    DPSGD,
    SSGD,
    Communication,
    Identity,
    algorithm_class,
    communication_of,
    label_of,
)
from ddl.config import ConfigError, TrainConfig, experiment_key


def test_declarations_of_the_registered_algorithms():
    assert SSGD.communication == Communication(gradient_allreduce=True)
    assert DPSGD.communication == Communication(neighbour_mixing=True)
    assert SSGD.communication.learners_agree and not DPSGD.communication.learners_agree
    assert DPSGD.communication.uses_topology and not SSGD.communication.uses_topology
    assert [n for n, c in ALGORITHMS.items() if c.identity.baseline] == [BASELINE] == [SSGD.name]
    assert label_of(SSGD.name) == "SSGD" and label_of(DPSGD.name) == "DPSGD"
    assert ALGORITHM_FIELDS == {"topology", "period", "compressor", "compress_ratio", "consensus_step"}
    assert TrainConfig().algo == BASELINE
    with pytest.raises(ConfigError, match="--algo"):
        algorithm_class("nope")


def test_declarations_of_the_other_synchronous_algorithms():
    cfg = TrainConfig(period=5, compressor="qsgd", compress_ratio=0.25)
    assert communication_of("local_sgd", cfg) == Communication(global_average_every=5)
    assert communication_of("gossip_pga", cfg) == Communication(neighbour_mixing=True, global_average_every=5)
    assert communication_of("gradient_tracking", cfg) == Communication(neighbour_mixing=True, exchanges_per_step=2)
    assert communication_of("choco", cfg) == Communication(neighbour_mixing=True, message_fraction=0.25)
    assert not any(communication_of(a, cfg).learners_agree for a in ("local_sgd", "gossip_pga", "choco"))


def test_experiment_key_asks_each_algorithm_for_its_fields():
    def key(**kw):
        return dict(experiment_key(TrainConfig(**kw)))

    assert key(algo="local_sgd", period=2) != key(algo="local_sgd", period=4)
    assert key(algo="local_sgd", topology="ring") == key(algo="local_sgd", topology="torus")  # it mixes nothing
    assert key(algo="dpsgd", period=2) == key(algo="dpsgd", period=4)  # not DPSGD's field
    assert key(algo="gossip_pga", topology="ring") != key(algo="gossip_pga", topology="torus")
    assert key(algo="choco", compress_ratio=0.5, compressor="topk") != key(algo="choco", compress_ratio=0.1,
                                                                          compressor="topk")
    assert "compressor" not in key(algo="gradient_tracking") and "topology" in key(algo="gradient_tracking")


def test_bad_declarations_are_refused():
    with pytest.raises(ValueError):
        Communication(global_average_every=0)
    with pytest.raises(ValueError):
        Communication(neighbours_per_step=1)  # a subset of neighbours without mixing
    with pytest.raises(ValueError):
        Communication(message_fraction=0.0)
    with pytest.raises(ValueError):
        Communication(neighbour_mixing=True, exchanges_per_step=0)


class PeriodicGossip(DPSGD):
    """A topology-using algorithm with a config-dependent period (as Gossip-PGA will be)."""

    name = "gossip-test"
    identity = Identity(label="GOSSIP-T", color="C2", experiment_fields=("topology",))

    @classmethod
    def communication_for(cls, cfg=None):
        return Communication(neighbour_mixing=True, global_average_every=None if cfg is None else cfg.epochs)


@pytest.fixture
def gossip(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, PeriodicGossip.name, PeriodicGossip)
    return PeriodicGossip.name


def test_experiment_key_keeps_the_topology_for_every_algorithm_that_declares_it(gossip):
    def key(**kw):
        return dict(experiment_key(TrainConfig(**kw)))

    assert key(algo=SSGD.name, topology="ring") == key(algo=SSGD.name, topology="torus")  # no neighbour set
    assert "topology" not in key(algo=SSGD.name)
    assert key(algo=DPSGD.name, topology="ring") != key(algo=DPSGD.name, topology="torus")
    # a new topology user is not merged across topologies (the old name test dropped its topology)
    assert key(algo=gossip, topology="ring") != key(algo=gossip, topology="torus")
    assert communication_of(gossip, TrainConfig(epochs=7)).global_average_every == 7


def test_report_labels_and_baseline_come_from_the_declaration(gossip):
    from ddl.report.groups import base_label

    assert base_label(TrainConfig(algo=gossip, learners=4, topology="torus", lr=0.5)) == "GOSSIP-T n=4 torus lr=0.5"
    assert base_label(TrainConfig(algo=SSGD.name, learners=4, topology="torus", lr=0.5)) == "SSGD n=4 lr=0.5"
    assert algorithms.is_baseline(SSGD.name) and not algorithms.is_baseline(gossip)


def test_groups_take_their_algorithms_colour_when_one_per_algorithm(tmp_path):
    from pathlib import Path

    from ddl.report.groups import make_groups
    from ddl.report.runs import RunData

    def run(algo, lr, seed=0):
        return RunData(Path(tmp_path / f"{algo}-{lr}-{seed}"), TrainConfig(algo=algo, learners=4, lr=lr, seed=seed),
                       {}, [], [], None, [])

    groups = make_groups([run(DPSGD.name, 0.1), run(SSGD.name, 0.1), run(SSGD.name, 0.1, seed=1)])
    assert [g.algo for g in groups] == [SSGD.name, DPSGD.name]  # the baseline first
    assert [g.color for g in groups] == [SSGD.identity.color, DPSGD.identity.color]
    groups = make_groups([run(SSGD.name, 0.1), run(SSGD.name, 0.2), run(DPSGD.name, 0.1)])
    assert [g.color for g in groups] == ["C0", "C1", "C2"]  # several groups of one algorithm: one colour each
