"""The rules a report's words follow, pinned on hand-made runs (no training): a failed run is one definition
(:mod:`ddl.report.outcome`); findings, trends and the regime map argue from runs that trained only; a cell where
every algorithm failed is never a win; regime-map cells are keyed by (n, b); the noise verdict follows the
directional test, not the time correlation."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ddl.config import TrainConfig
from ddl.report.outcome import COLLAPSED, DIVERGED, NO_EVALUATION, failure
from ddl.report.runs import RunData
from ddl.report.sweep_data import GridPoint, regime_maps
from ddl.report.sweep_findings import findings
from ddl.report.verdict import direction_outcome, direction_verdict, noise_facts


def fake_run(algo="ssgd", lr=0.5, b=25, n=16, seed=0, status="max_epochs", train_loss=0.01, test_err=0.06,
             true_gap=None, noise=()) -> RunData:  # fmt: skip
    cfg = TrainConfig(algo=algo, lr=lr, batch_size=b, learners=n, seed=seed)
    final = {} if test_err is None else {"train_loss": train_loss, "test_loss": train_loss + 0.3,
                                         "train_acc": 1.0, "test_acc": 1.0 - test_err}
    duality = None
    if true_gap is not None:
        duality = SimpleNamespace(true_gap=true_gap, pairwise_gap=true_gap, sharp_gap=0.0, flat_gap=true_gap,
                                  mean_gap=0.0, n_sharp=1, n_directions=2, sigma_g=np.ones(2),
                                  sigma_w=np.ones(2), size=2.0, size_curved=2.0, size_null=0.0,
                                  eigenvalues=np.array([2.0, 1.0]))  # fmt: skip
    return RunData(Path(f"{algo}-{lr}-{n}x{b}-{seed}"), cfg, {"status": status, "final": final}, [], list(noise),
                   duality)


def cells_of(runs: list[RunData], keys=("algo", "lr", "batch_size")) -> list[GridPoint]:
    cells: dict[str, GridPoint] = {}
    for r in runs:
        values = {k: getattr(r.config, k) for k in keys}
        c = cells.setdefault(str(values), GridPoint(values, [], 0))
        c.runs.append(r)
        c.planned += 1
    return list(cells.values())


def test_one_definition_of_a_failed_run():
    assert failure(fake_run()) is None
    assert failure(fake_run(status="diverged", train_loss=math.nan)) == DIVERGED
    assert failure(fake_run(test_err=None)) == NO_EVALUATION
    assert failure(fake_run(train_loss=2.30)) == COLLAPSED  # chance-level loss
    # the case: training loss 2.058 (just under 0.9 ln 10) but 78.6 % test error: collapsed all the same
    assert failure(fake_run(train_loss=2.058, test_err=0.786)) == COLLAPSED
    assert failure(fake_run(train_loss=0.6, test_err=0.241)) is None  # poor, but it trained


def test_a_cell_where_every_algorithm_failed_is_never_a_win():
    """SSGD collapsed (80.7 %) and DPSGD diverged (90 %) at lr 1: named as such, no "lower by more than 1 pp";
    the most different cell is one where both trained."""
    runs = [fake_run("ssgd", 0.5, test_err=0.06), fake_run("dpsgd", 0.5, test_err=0.05),
            fake_run("ssgd", 1.0, train_loss=2.06, test_err=0.807),
            fake_run("dpsgd", 1.0, status="diverged", train_loss=math.nan, test_err=0.9)]  # fmt: skip
    grid = {"algo": ["ssgd", "dpsgd"], "lr": [0.5, 1.0], "batch_size": [25]}
    cells = cells_of(runs)
    (m,) = regime_maps(grid, cells)
    assert np.isnan(m.difference("dpsgd")[0, 1]) and m.all_failed("ssgd")[0, 1] and m.all_failed("dpsgd")[0, 1]
    assert m.most_different() == ("dpsgd", 0, 0)
    lines, _ = findings(grid, cells, [m])
    text = "\n".join(lines)
    both = [x for x in lines if "both diverge / collapse" in x]
    assert len(both) == 1 and "lr=1" in both[0] and "SSGD collapsed" in both[0] and "DPSGD diverged" in both[0]
    wins = [x for x in lines if "lower by more than 1 pp" in x]
    assert wins and all("lr=1 " not in x and "lr=1," not in x for x in wins)
    assert "lr=0.5" in wins[0] and "DPSGD's test error is lower" in wins[0]
    assert "2 of 4 runs failed (1 collapsed, 1 diverged" in text


def test_only_failed_cells_have_no_most_different_cell():
    runs = [fake_run("ssgd", lr, status="diverged", test_err=0.9, train_loss=math.nan) for lr in (0.5, 1.0)]
    runs += [fake_run("dpsgd", lr, test_err=0.05) for lr in (0.5, 1.0)]
    grid = {"algo": ["ssgd", "dpsgd"], "lr": [0.5, 1.0], "batch_size": [25]}
    (m,) = regime_maps(grid, cells_of(runs))
    assert m.most_different() is None
    lines, _ = findings(grid, cells_of(runs), [m])
    assert any("SSGD failed (diverged) while DPSGD trained" in x for x in lines)
    assert not any("lower by more than" in x for x in lines)


def test_a_trend_skips_failed_runs_and_says_so():
    runs = [fake_run("ssgd", 0.5, true_gap=0.29), fake_run("ssgd", 0.75, true_gap=0.2),
            fake_run("ssgd", 1.0, status="diverged", train_loss=math.nan, test_err=0.9, true_gap=0.0)]
    grid = {"algo": ["ssgd"], "lr": [0.5, 0.75, 1.0], "batch_size": [25]}
    lines, nums = findings(grid, cells_of(runs), [])
    (trend,) = [x for x in lines if "the true gap" in x]
    assert "falls as lr goes from 0.5 to 0.75: 0.29, 0.2, failed" in trend
    assert "1 run excluded (1 diverged)" in trend
    assert nums["trends"][0]["excluded"] == {"diverged": 1}
    assert np.isnan(nums["trends"][0]["true_gap"][2])  # the diverged run's 0.0 never enters


def test_regime_cells_are_keyed_by_learners_and_batch():
    """(n = 4, b = 100) and (n = 16, b = 25) have one total batch 400: two rows, not one overwritten cell."""
    runs = [fake_run(a, lr, b=b, n=n, test_err=0.05 + 0.01 * n / 16)
            for a in ("ssgd", "dpsgd") for lr in (0.5, 1.0) for n, b in ((4, 100), (16, 25))]
    grid = {"algo": ["ssgd", "dpsgd"], "lr": [0.5, 1.0], "learners": [4, 16], "batch_size": [25, 100]}
    cells = cells_of(runs, ("algo", "lr", "learners", "batch_size"))
    (m,) = regime_maps(grid, cells)
    assert m.rows == [(4, 100), (16, 25)] and m.batches == [400, 400]
    assert m.error["ssgd"][:, 0] == pytest.approx([0.0525, 0.06])


def test_any_number_of_algorithms_one_panel_each(monkeypatch):
    from ddl.algorithms import ALGORITHMS, DPSGD
    from ddl.report.sweep_figures import fig_regime

    monkeypatch.setitem(ALGORITHMS, "other", DPSGD)
    runs = [fake_run(a, lr, test_err=e) for a, e in (("ssgd", 0.06), ("dpsgd", 0.05), ("other", 0.08))
            for lr in (0.5, 1.0)]
    grid = {"algo": ["dpsgd", "other", "ssgd"], "lr": [0.5, 1.0], "batch_size": [25]}
    (m,) = regime_maps(grid, cells_of(runs))
    assert m.algos == ("ssgd", "dpsgd", "other")
    assert m.difference("other")[0] == pytest.approx([0.02, 0.02])
    assert len(fig_regime(m).axes) == 3 + 2 + 5  # three error panels, two difference panels, their colour bars
    (m2,) = regime_maps(grid, cells_of(runs), baseline="dpsgd")  # --baseline
    assert m2.algos == ("dpsgd", "other", "ssgd") and m2.difference("ssgd")[0] == pytest.approx([0.01, 0.01])


def _stats(eta, xi, diff, n=3, std=0.01, corr=0.9):
    s = lambda v, sd=std: {"mean": v, "std": sd if n > 1 else math.nan, "n": n}  # noqa: E731
    return {"eta_top_share": s(eta), "xi_top_share": s(xi), "eta_minus_xi_top_share": s(diff),
            "random_top_share": s(5 / 1000), "noise_measurements": s(30.0), "noise_top_k": s(5.0),
            "ssgd_noise_sq": s(1.0), "dpsgd_noise_sq": s(0.5), "total_noise_sq": s(1.5),
            "noise_sharpness_corr": s(corr), "xi_sharpness_corr": s(0.95)}  # fmt: skip


def test_noise_verdict_follows_the_directional_test():
    """The issue's runs: η's top-5 share 0.32 against ξ's 0.37 with η's time correlation 0.70: not supported,
    whatever the time correlation says."""
    assert direction_outcome(_stats(0.32, 0.37, -0.05)) == "not supported"
    assert direction_outcome(_stats(0.004, 0.001, 0.003)) == "not supported"  # below k/P = 0.005
    assert direction_outcome(_stats(0.5, 0.3, 0.2)) == "supported"
    assert direction_outcome(_stats(0.5, 0.3, 0.2, std=0.3)) == "not established"  # within the seeds' spread
    assert direction_outcome(_stats(0.5, 0.3, 0.2, n=1)) == "not established"  # one seed
    facts = noise_facts(_stats(0.32, 0.37, -0.05, corr=0.70), _stats(0.0, 0.4, 0.0))
    text = " ".join(facts)
    assert "**not supported here**" in text and "supported here**:" not in text.replace("not supported here**:", "")
    assert "larger where the landscape is sharper" not in text
    assert "r = 0.70" in text and "r = 0.95" in text  # the time correlation only beside ξ's
    assert "**supported here**" in direction_verdict(_stats(0.5, 0.3, 0.2))
