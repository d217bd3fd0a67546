"""The large-model case-study section (ddl/report/deep_case.py): which runs belong to it (asked of the config),
failed runs named and left out, the verdict's three parts against the claim; and the GPU script's CPU smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ddl.config import TrainConfig
from ddl.report import deep_case
from ddl.report.deep_case import Comparison, case_blocks, failure, model_cases
from ddl.report.runs import RunData
from ddl.report.stats import seed_stat

ROOT = Path(__file__).resolve().parents[1]


def _run(name: str, status: str = "max_epochs", train_loss: float = 0.3, **cfg) -> RunData:
    config = TrainConfig(**cfg).validate()
    final = {"train_loss": train_loss, "test_loss": train_loss + 0.2, "train_acc": 0.9, "test_acc": 0.8,
             "train_loss_avg_bn": train_loss + 0.1, "test_loss_avg_bn": train_loss + 0.5, "test_acc_avg_bn": 0.7}
    return RunData(Path(name), config, {"status": status, "final": final}, [final], [], None)


def test_only_runs_with_a_width_are_deep_and_failed_runs_are_named():
    runs = [_run("mlp", model="mlp"),
            _run("r-ss", model="resnet18", width=4, algo="ssgd"),
            _run("r-dp", model="resnet18", width=4, algo="dpsgd"),
            _run("r-div", model="resnet18", width=4, algo="dpsgd", lr=0.5, status="diverged"),
            _run("d-col", model="densenet121", width=4, algo="ssgd", train_loss=2.2)]  # fmt: skip
    assert failure(runs[3]) == "diverged" and failure(runs[4]) == "collapsed" and failure(runs[1]) is None
    cases = {c.model: c for c in model_cases(runs)}
    assert set(cases) == {"resnet18", "densenet121"}
    assert [r.path.name for r, _ in cases["resnet18"].failed] == ["r-div"]
    assert sorted(r.path.name for g in cases["resnet18"].groups for r in g.runs) == ["r-dp", "r-ss"]
    assert cases["densenet121"].groups == []
    text = "\n".join(cases["densenet121"].verdict())
    assert "d-col (collapsed)" in text and "not tested" in text
    assert case_blocks([runs[0]]) == ([], [], {})


class _Fixed:
    """A group stand-in with fixed numbers."""

    def __init__(self, **means):
        self.means = means

    def numbers(self):
        return {k: seed_stat([v, v]) for k, v in self.means.items()}


@pytest.mark.parametrize("dp,agrees", [
    (dict(sigma_g_top=0.5, sigma_w_sum=1.0, true_gap=0.1), True),
    (dict(sigma_g_top=0.5, sigma_w_sum=2.0, true_gap=0.1), False),  # flatter but larger
    (dict(sigma_g_top=1.0, sigma_w_sum=1.0, true_gap=0.1), False),  # not flatter
    (dict(sigma_g_top=0.5, sigma_w_sum=1.0, true_gap=0.3), False),  # larger gap
])  # fmt: skip
def test_the_verdict_needs_flatter_same_size_and_smaller_gap(dp, agrees):
    common = dict(test_err=0.1, sharp_gap=0.05)
    c = Comparison(0.1, _Fixed(**dp, **common), _Fixed(sigma_g_top=1.0, sigma_w_sum=1.0, true_gap=0.2, **common))
    assert c.agrees is agrees
    line = c.lines()[0]
    assert ("**agrees**" in line) is agrees


@pytest.mark.parametrize("err_dp,caveat", [(0.3, True), (0.1, True), (0.05, False)])
def test_a_smaller_gap_with_a_higher_test_error_is_said_to_be_a_worse_fit(err_dp, caveat):
    """DPSGD's smaller gap at a higher test error is a worse fit of the training set, and the line says so."""
    dp = _Fixed(sigma_g_top=0.5, sigma_w_sum=1.0, true_gap=0.1, test_err=err_dp, sharp_gap=0.05)
    ss = _Fixed(sigma_g_top=1.0, sigma_w_sum=1.0, true_gap=0.2, test_err=0.1, sharp_gap=0.05)
    c = Comparison(0.1, dp, ss)
    assert c.agrees is True and c.dpsgd_better_error is (err_dp < 0.1)
    assert ("worse fit of the training set" in c.lines()[0]) is caveat


def test_bn_table_reads_both_accuracies():
    runs = [_run("a", model="resnet18", width=4, algo="ssgd", seed=0),
            _run("b", model="resnet18", width=4, algo="ssgd", seed=1)]
    table = deep_case.bn_table(model_cases(runs)[0])
    assert [c.text for c in table.rows[0].cells[1:3]] == ["20.00 % ± 0.00 pp", "30.00 % ± 0.00 pp"]


@pytest.mark.slow
def test_fig7_gpu_smoke_runs_every_path(tmp_path):
    """benchmarks/fig7_gpu.sh --smoke: both models, both algorithms, noise, analysis, report, JSON — on the CPU."""
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path)}
    r = subprocess.run(["bash", "benchmarks/fig7_gpu.sh", "--smoke"], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((tmp_path / "fig7_gpu_smoke.json").read_text())
    assert doc["smoke"] is True and doc["sweep_status"] == 0
    assert sorted((row["model"], row["algo"]) for row in doc["runs"]) == \
        [("densenet121", "dpsgd"), ("densenet121", "ssgd"), ("resnet18", "dpsgd"), ("resnet18", "ssgd")]
    assert all(row["status"] in ("max_epochs", "converged", "diverged") for row in doc["runs"])
    assert set(doc["case_study"]) == {"resnet18", "densenet121"}
    assert (tmp_path / "case" / "case_study.md").is_file()
    run = ROOT / "benchmarks/results/fig7_gpu_smoke/model=resnet18,algo=dpsgd,seed=0"
    assert (run / "analysis" / "duality.json").is_file() and (run / "noise.jsonl").is_file()
