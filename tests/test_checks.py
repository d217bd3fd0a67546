"""Checks that speak up: a failed exactness check is a warning line in `ddl analyze` and recorded in the result."""

import dataclasses
import json

import pytest

from analysis.checks import THRESHOLDS, failed_checks
from ddl.commands.analyze import analyze_run

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from ddl.config import TrainConfig
    from ddl.models import build_model
    from ddl.rundir.layout import save_torch, write_json

    path = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = TrainConfig(train_per_class=20, test_per_class=10, epochs=1, progress=False, out=str(path))
    write_json(path / "config.json", cfg.to_dict())
    write_json(path / "summary.json", {"status": "max_epochs", "steps": 0})
    save_torch(path / "checkpoints" / "averaged.pt", build_model("mlp", (1, 28, 28), seed=0).state_dict())
    return path


def test_clean_analysis_passes_and_a_large_error_is_flagged(run_dir, tmp_path, capsys):
    res = analyze_run(run_dir, layer="fc2", out=tmp_path / "a", progress=False, verbose=False)
    assert failed_checks(res) == [] and res.meta["failed_checks"] == []
    assert "warning" not in capsys.readouterr().err
    bad = dataclasses.replace(res, decomposition_error=1e-3 * max(abs(res.pairwise_gap), 1e-3))
    (f,) = failed_checks(bad)
    assert f.name == "decomposition_error" and f.threshold == THRESHOLDS["float64"]["decomposition_error"]
    assert "decomposition error" in f.message() and "exceeds" in f.message()
    # the same value passes in float32, whose threshold is looser; a duality error does not
    assert failed_checks(dataclasses.replace(bad, dtype="float32")) == []
    names = [f.name for f in failed_checks(dataclasses.replace(res, duality_check_error=0.5, dtype="float32"))]
    assert names == ["duality_check_error"]
    assert [f.name for f in failed_checks(dataclasses.replace(res, duality_loss_error=float("nan")))] == [
        "duality_loss_error"]


@pytest.mark.filterwarnings("ignore:Lanczos.*not converged:UserWarning")
def test_unconverged_lanczos_prints_a_warning_and_is_recorded(run_dir, tmp_path, capsys):
    out = tmp_path / "lz"
    res = analyze_run(run_dir, layer="fc2", out=out, progress=False, verbose=False, eigensolver="lanczos",
                      top_k=30, lanczos_max_iter=30)
    assert res.lanczos_residual / abs(res.eigenvalues[0]) > THRESHOLDS["float64"]["lanczos_residual"]
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(lines) == 1 and "fc2: Lanczos residual" in lines[0] and "exceeds its threshold" in lines[0]
    doc = json.loads((out / "duality.json").read_text())
    assert [f["name"] for f in doc["meta"]["failed_checks"]] == ["lanczos_residual"]


def test_dropout_and_label_noise_run_through_to_a_clean_analysis(tmp_path):
    """Training with dropout and label noise, then the analysis: the Hessian and the partners use the correctly
    labelled samples only, and every exactness check passes."""
    from ddl.config import TrainConfig
    from ddl.loop.train import train

    out = tmp_path / "noisy"
    train(TrainConfig(algo="dpsgd", learners=4, batch_size=10, lr=0.2, epochs=1, dropout=0.2, label_noise=0.2,
                      train_per_class=20, test_per_class=5, progress=False, out=str(out)))
    res = analyze_run(out, layer="fc2", progress=False, verbose=False)
    assert res.n_train == 200 and res.n_test == 50  # 20 clean per class; 250 trained on
    assert failed_checks(res) == [] and res.decomposition_error < 1e-12


def test_augmented_cifar_training_runs_through_to_a_clean_analysis(tmp_path):
    """CIFAR-format data with --augment (random crop + flip per learner and step), a CNN, then the analysis of its
    final layer: the augmentation changes the trajectory, and every exactness check of the analysis passes."""
    import pickle

    import numpy as np
    import torch

    from ddl.config import TrainConfig
    from ddl.loop.train import train

    base = tmp_path / "data" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    runs = {}
    for augment in (False, True):
        out = tmp_path / f"run-{augment}"
        train(TrainConfig(algo="dpsgd", learners=2, batch_size=10, lr=0.05, epochs=1, model="cnn", dataset="cifar10",
                          data_dir=str(tmp_path / "data"), augment=augment, progress=False, out=str(out)))
        runs[augment] = torch.load(out / "checkpoints" / "learners.pt")["weights"]
    assert not torch.equal(runs[False], runs[True])  # the augmentation was applied
    res = analyze_run(tmp_path / "run-True", progress=False, verbose=False)
    assert res.n_train == 100 and res.n_test == 20 and res.hessian == "kron"
    assert failed_checks(res) == [] and res.decomposition_error < 1e-10
