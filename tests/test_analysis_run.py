"""``analyze_run`` and the ``analyze`` command on small run directories."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from analysis import AnalysisError, DualityResult, decompose
from ddl.commands.analyze import add_analyze_arguments, analysis_test_set, analyze_run, run_analyze
from ddl.errors import DDLError

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory in the documented layout (config.json, summary.json, checkpoints/averaged.pt)."""
    from ddl.config import TrainConfig
    from ddl.models import build_model
    from ddl.rundir.layout import save_torch, write_json

    path = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = TrainConfig(model="mlp", dataset="mnist5k", train_per_class=20, test_per_class=10, epochs=1,
                      progress=False, out=str(path))  # fmt: skip
    write_json(path / "config.json", cfg.to_dict())
    write_json(path / "summary.json", {"status": "max_epochs", "steps": 0})
    model = build_model("mlp", (1, 28, 28), seed=0)
    save_torch(path / "checkpoints" / "averaged.pt", model.state_dict())
    return path


def test_analyze_run_writes_result_and_figures(run_dir):
    res = analyze_run(run_dir, layer="fc2", test_samples=30, progress=False)
    out = run_dir / "analysis"
    for name in ("duality.npz", "duality.json", "sigma_g_vs_lambda.png", "sigma_w.png", "contributions.png"):
        assert (out / name).is_file(), name
    doc = json.loads((out / "duality.json").read_text())
    for key in ("pairwise_gap", "true_gap", "sharp_gap", "flat_gap", "n_sharp", "decomposition_error"):
        assert key in doc
    assert doc["layer"] == "fc2" and doc["n_test"] == 30 and doc["meta"]["config"]["model"] == "mlp"
    assert res.n_params == 900 and res.n_train == 200 and res.hessian == "ggn" and res.upper == "chain"
    assert res.decomposition_error < 1e-12 and res.duality_loss_error < 1e-10
    assert set(res.timings) >= {"load", "capture", "hessian", "eigen", "figures", "total"}

    # the same numbers as decompose on the run's model and data
    from ddl.rundir.layout import load_run

    run = load_run(run_dir)
    data = run.dataset()
    direct = decompose(run.model(), "fc2", train=data.clean_train(),
                       test=analysis_test_set(data.x_test, data.y_test, 30))
    np.testing.assert_allclose(res.contributions, direct.contributions, rtol=1e-12, atol=1e-15)
    assert res.pairwise_gap == direct.pairwise_gap

    back = DualityResult.load(out)
    np.testing.assert_array_equal(back.sigma_g, res.sigma_g)
    assert back.meta["run_dir"] == str(run_dir)


def test_cli_arguments_default_layer_and_out(run_dir, tmp_path, capsys):
    parser = add_analyze_arguments(argparse.ArgumentParser())
    out = tmp_path / "elsewhere"
    args = parser.parse_args([str(run_dir), "--test-samples", "20", "--out", str(out), "--split", "count",
                              "--split-value", "5", "--dtype", "float32", "--no-progress"])  # fmt: skip
    assert run_analyze(args) == 0
    printed = capsys.readouterr().out
    assert "pairwise gap" in printed and str(out) in printed
    res = DualityResult.load(out / "duality.json")
    # the default layer is the one the model names: the MLP's middle 30×30 layer (the paper's), as in `ddl sweep`
    assert res.layer == "fc2" and res.n_sharp == 5 and res.dtype == "float32"
    assert res.n_params == 900 and res.n_test == 20


def test_bad_run_dir_and_layer_are_one_line_value_errors(run_dir, tmp_path):
    with pytest.raises(DDLError, match="RUN_DIR: .* no config.json"):
        analyze_run(tmp_path, progress=False)
    with pytest.raises(AnalysisError, match="--layer: the model has no module named 'fc7'; nn.Linear layers: fc1, fc2"):
        analyze_run(run_dir, layer="fc7", out=tmp_path / "x", progress=False)
    with pytest.raises(AnalysisError, match="--test-samples"):
        analyze_run(run_dir, test_samples=0, progress=False)

    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "ddl", "analyze", str(run_dir), "--layer", "relu1", "--no-progress"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--layer" in r.stderr


def test_ddl_cli_analyze_end_to_end(tmp_path):
    """The trainer's CLI: train one epoch, then `ddl analyze` the run."""
    from ddl.commands import cli
    run = tmp_path / "run"
    assert cli.main(["train", "--epochs", "1", "--train-per-class", "20", "--test-per-class", "5",
                     "--out", str(run), "--no-progress"]) == 0  # fmt: skip
    assert cli.main(["analyze", str(run), "--layer", "fc2", "--test-samples", "25", "--no-progress"]) == 0
    res = DualityResult.load(run / "analysis")
    assert res.layer == "fc2" and res.n_test == 25 and res.decomposition_error < 1e-12
    with pytest.raises(SystemExit) as e:
        cli.main(["analyze", str(run), "--layer", "nope", "--no-progress"])
    assert e.value.code == 2
    assert torch.isfinite(torch.tensor(res.true_gap))
