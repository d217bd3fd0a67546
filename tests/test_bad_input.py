"""Bad input, as a new user would give it: one ``ddl: error: …`` line, exit status 2, no traceback, and an
existing run directory left exactly as it was.

The CLI runs in-process (``ddl.commands.cli.main``); the matrix below is the one quoted in docs/guarantees.md.
"""

import gzip
import json
import math
import pickle
import random
from pathlib import Path

import pytest

from ddl.commands.cli import main
from ddl.config import TrainConfig

TINY = ["--train-per-class", "10", "--test-per-class", "5", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A finished run, a run with corrupt files of each kind, fake data directories and config files."""
    root = tmp_path_factory.mktemp("bad")
    run = root / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0

    def copy_run(name: str) -> Path:
        dst = root / name
        dst.mkdir()
        for p in run.rglob("*"):
            if p.is_file():
                q = dst / p.relative_to(run)
                q.parent.mkdir(parents=True, exist_ok=True)
                q.write_bytes(p.read_bytes())
        return dst

    bad_config = copy_run("bad_config")
    (bad_config / "config.json").write_text('{"algo": "ssgd", "lr": ')
    bad_metrics = copy_run("bad_metrics")
    (bad_metrics / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "train_lo\n{"step": 3}\n')
    bad_summary = copy_run("bad_summary")
    (bad_summary / "summary.json").write_text("{not json")
    bad_averaged = copy_run("bad_averaged")
    p = bad_averaged / "checkpoints" / "averaged.pt"
    p.write_bytes(p.read_bytes()[:200])
    bad_state = copy_run("bad_state")
    for p in (bad_state / "checkpoints").glob("state-*.pt"):
        p.write_bytes(p.read_bytes()[:-10])
    (root / "empty").mkdir()
    (root / "afile").write_text("x")

    # data directories: missing files, garbage in the right names, a truncated gzip, a file where a dir belongs
    idx = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    garbage = root / "mnist_garbage"
    garbage.mkdir()
    for name in idx:
        (garbage / name).write_bytes(b"\x00\x00\x0f\x07not an idx file")
    short = root / "mnist_short"
    short.mkdir()
    for name in idx:
        (short / name).write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x05")  # header promising more than is there
    gz = root / "fashion_truncated"
    gz.mkdir()
    for name in idx:
        (gz / (name + ".gz")).write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 100)[:20])
    isdir = root / "mnist_dirs"
    isdir.mkdir()
    for name in idx:
        (isdir / name).mkdir()
    cifar = root / "cifar_garbage"
    (cifar / "cifar-10-batches-py").mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (cifar / "cifar-10-batches-py" / name).write_bytes(b"garbage, not a pickle")
    cifar_wrong = root / "cifar_wrong"
    (cifar_wrong / "cifar-10-batches-py").mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        (cifar_wrong / "cifar-10-batches-py" / name).write_bytes(pickle.dumps({"labels": [1, 2]}))

    cfgs = root / "cfg"
    cfgs.mkdir()
    (cfgs / "unknown.json").write_text(json.dumps({"lr": 0.1, "learning_rate": 0.2}))
    (cfgs / "typed.yaml").write_text("lr: fast\n")
    (cfgs / "typed.toml").write_text('eval_every = "ten"\n')
    (cfgs / "float_int.toml").write_text("learners = 2.5\n")
    (cfgs / "list.yaml").write_text("- lr\n- 0.1\n")
    (cfgs / "broken.json").write_text('{"lr": 0.1,')
    (cfgs / "broken.toml").write_text("lr = = 1\n")
    (cfgs / "nan.yaml").write_text("lr: .nan\n")
    (cfgs / "bool.json").write_text(json.dumps({"bias": "yes"}))
    (cfgs / "hidden.json").write_text(json.dumps({"hidden": "30,30"}))
    return root


# (id, argv with {root} placeholders, expected start of the error line after "ddl: error: ")
NUMERIC = [
    ("lr-nan", ["--lr", "nan"], "--lr: must be a finite number, got nan"),
    ("lr-inf", ["--lr", "inf"], "--lr: must be a finite number, got inf"),
    ("lr-negative", ["--lr", "-0.1"], "--lr: must be > 0, got -0.1"),
    ("lr-text", ["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    ("momentum-1", ["--momentum", "1"], "--momentum: must be in [0, 1), got 1.0"),
    ("momentum-nan", ["--momentum", "nan"], "--momentum: must be a finite number, got nan"),
    ("weight-decay", ["--weight-decay", "-0.5"], "--weight-decay: must be ≥ 0, got -0.5"),
    ("wd-stop-epoch", ["--wd-stop-epoch", "-1"], "--wd-stop-epoch: must be ≥ 0, got -1"),
    ("lr-gamma", ["--lr-gamma", "0"], "--lr-gamma: must be > 0, got 0.0"),
    ("lr-milestones", ["--lr-milestones", "5", "-2"], "--lr-milestones: must be ≥ 0, got -2"),
    ("warmup-inf", ["--warmup-epochs", "inf"], "--warmup-epochs: must be a finite number, got inf"),
    ("epochs-0", ["--epochs", "0"], "--epochs: must be ≥ 1, got 0"),
    ("epochs-float", ["--epochs", "2.5"], "argument --epochs: invalid int value: '2.5'"),
    ("stop-loss-nan", ["--stop-loss", "nan"], "--stop-loss: must be a finite number, got nan"),
    ("stop-loss-negative", ["--stop-loss", "-1"], "--stop-loss: must be ≥ 0, got -1.0"),
    ("stop-acc", ["--stop-acc", "1.5"], "--stop-acc: must be in [0, 1], got 1.5"),
    ("eval-every", ["--eval-every", "0"], "--eval-every: must be ≥ 1, got 0"),
    ("eval-samples", ["--eval-samples", "0"], "--eval-samples: must be ≥ 1, got 0"),
    ("measure-noise", ["--measure-noise", "-5"], "--measure-noise: must be ≥ 0, got -5"),
    ("noise-samples", ["--noise-samples", "0"], "--noise-samples: must be ≥ 1, got 0"),
    ("noise-top-k", ["--noise-top-k", "0"], "--noise-top-k: must be ≥ 1, got 0"),
    ("hidden", ["--hidden", "30", "0"], "--hidden: must be ≥ 1, got 0"),
    ("dropout", ["--dropout", "1"], "--dropout: must be in [0, 1), got 1.0"),
    ("init-scale", ["--init-scale=-inf"], "--init-scale: must be a finite number, got -inf"),
    ("train-per-class", ["--train-per-class", "0"], "--train-per-class: must be ≥ 1, got 0"),
    ("test-per-class", ["--test-per-class", "-3"], "--test-per-class: must be ≥ 1, got -3"),
    ("label-noise", ["--label-noise", "1"], "--label-noise: must be in [0, 1), got 1.0"),
    ("seed", ["--seed", "-1"], "--seed: must be ≥ 0, got -1"),
    ("learners", ["--learners", "0"], "--learners: must be ≥ 1, got 0"),
    ("batch-size", ["--batch-size", "0"], "--batch-size: must be ≥ 1, got 0"),
    ("workers", ["--workers", "0"], "--workers: must be ≥ 1, got 0"),
    ("checkpoint-every", ["--checkpoint-every", "-1"], "--checkpoint-every: must be ≥ 0, got -1"),
    ("ray-max-restarts", ["--ray-max-restarts", "-1"], "--ray-max-restarts: must be ≥ 0, got -1"),
    ("algo", ["--algo", "adam"], "argument --algo: invalid choice: 'adam'"),
]
DATA = [
    ("batch-larger-than-data", ["--batch-size", "200"],
     "--batch-size: total batch 1×200 exceeds the 100 training samples"),
    ("test-per-class-too-many", ["--test-per-class", "600"],
     "--test-per-class: 600 test samples per class exceed the 500 per class that mnist5k has"),
    ("mnist-no-data-dir", ["--dataset", "mnist"], "--data-dir: required for --dataset mnist"),
    ("mnist-missing-dir", ["--dataset", "mnist", "--data-dir", "{root}/nope"],
     "--data-dir: {root}/nope is not a directory"),
    ("mnist-empty-dir", ["--dataset", "mnist", "--data-dir", "{root}/empty"],
     "--data-dir: mnist not found in {root}/empty"),
    ("mnist-garbage", ["--dataset", "mnist", "--data-dir", "{root}/mnist_garbage"],
     "--data-dir: {root}/mnist_garbage/train-images-idx3-ubyte is not an IDX file"),
    ("mnist-short", ["--dataset", "mnist", "--data-dir", "{root}/mnist_short"],
     "--data-dir: {root}/mnist_short/train-images-idx3-ubyte is not an IDX file"),
    ("mnist-dirs", ["--dataset", "mnist", "--data-dir", "{root}/mnist_dirs"],
     "--data-dir: mnist not found in {root}/mnist_dirs"),
    ("fashion-truncated-gz", ["--dataset", "fashion-mnist", "--data-dir", "{root}/fashion_truncated"],
     "--data-dir: {root}/fashion_truncated/train-images-idx3-ubyte.gz is not an IDX file"),
    ("fashion-file-as-dir", ["--dataset", "fashion-mnist", "--data-dir", "{root}/afile"],
     "--data-dir: {root}/afile is not a directory"),
    ("cifar-empty", ["--dataset", "cifar10", "--data-dir", "{root}/empty"],
     "--data-dir: cifar10 not found: expected {root}/empty/cifar-10-batches-py/"),
    ("cifar-garbage", ["--dataset", "cifar10", "--data-dir", "{root}/cifar_garbage"],
     "--data-dir: cifar10 in {root}/cifar_garbage is unreadable"),
    ("cifar-wrong-content", ["--dataset", "cifar10", "--data-dir", "{root}/cifar_wrong"],
     "--data-dir: cifar10 in {root}/cifar_wrong is unreadable"),
]
CONFIG = [
    ("config-missing", ["--config", "{root}/cfg/nope.yaml"], "--config: no such file {root}/cfg/nope.yaml"),
    ("config-unknown-key", ["--config", "{root}/cfg/unknown.json"], "--config: unknown key learning_rate"),
    ("config-yaml-type", ["--config", "{root}/cfg/typed.yaml"], "--lr: expected a number, got 'fast'"),
    ("config-toml-type", ["--config", "{root}/cfg/typed.toml"], "--eval-every: expected an integer, got 'ten'"),
    ("config-toml-float-int", ["--config", "{root}/cfg/float_int.toml"], "--learners: expected an integer, got 2.5"),
    ("config-yaml-list", ["--config", "{root}/cfg/list.yaml"],
     "--config: {root}/cfg/list.yaml must hold a mapping of flag names to values"),
    ("config-json-syntax", ["--config", "{root}/cfg/broken.json"],
     "--config: {root}/cfg/broken.json is not valid JSON"),
    ("config-toml-syntax", ["--config", "{root}/cfg/broken.toml"],
     "--config: {root}/cfg/broken.toml is not valid TOML"),
    ("config-yaml-nan", ["--config", "{root}/cfg/nan.yaml"], "--lr: must be a finite number, got nan"),
    ("config-json-bool", ["--config", "{root}/cfg/bool.json"], "--bias: expected true or false, got 'yes'"),
    ("config-json-list", ["--config", "{root}/cfg/hidden.json"], "--hidden: expected a list of integers, got '30,30'"),
]
OUT = [
    ("out-under-a-file", ["--out", "{root}/afile/run"], "--out: cannot write the run directory {root}/afile/run"),
    ("out-taken", ["--out", "{root}/run"], "--out: {root}/run already holds a run (pass --overwrite to replace it)"),
    ("resume-empty", ["--out", "{root}/empty", "--resume"], "--resume: {root}/empty holds no run to resume"),
    ("resume-finished", ["--out", "{root}/run", "--resume"], "--resume: {root}/run is finished (max_epochs"),
    ("resume-corrupt-config", ["--out", "{root}/bad_config", "--resume", "--epochs", "2"],
     "RUN_DIR: {root}/bad_config/config.json is unreadable or not JSON"),
    ("resume-corrupt-checkpoints", ["--out", "{root}/bad_state", "--resume", "--epochs", "2"],
     "--resume: no valid checkpoint in {root}/bad_state/checkpoints"),
]
RUN_DIRS = [
    ("analyze-not-a-run", ["analyze", "{root}/empty"], "RUN_DIR: {root}/empty has no config.json"),
    ("analyze-unknown-layer", ["analyze", "{root}/run", "--layer", "fc9"],
     "--layer: the model has no module named 'fc9'"),
    ("analyze-non-linear-layer", ["analyze", "{root}/run", "--layer", "relu1"], "--layer: "),
    ("analyze-corrupt-config", ["analyze", "{root}/bad_config"],
     "RUN_DIR: {root}/bad_config/config.json is unreadable or not JSON"),
    ("analyze-corrupt-checkpoint", ["analyze", "{root}/bad_averaged"],
     "RUN_DIR: {root}/bad_averaged/checkpoints/averaged.pt is corrupt or unreadable"),
    ("analyze-test-samples", ["analyze", "{root}/run", "--test-samples", "0"], "--test-samples: must be ≥ 1, got 0"),
    ("compare-not-a-run", ["compare", "{root}/empty", "--out", "{root}/rep"],
     "RUN: {root}/empty is neither a run directory (no config.json) nor a directory of runs"),
    ("compare-corrupt-config", ["compare", "{root}/bad_config", "--out", "{root}/rep"],
     "RUN_DIR: {root}/bad_config/config.json is unreadable or not JSON"),
    ("compare-corrupt-metrics", ["compare", "{root}/bad_metrics", "--out", "{root}/rep"],
     "RUN_DIR: {root}/bad_metrics/metrics.jsonl: line 2 is not a JSON record"),
    ("compare-corrupt-summary", ["compare", "{root}/bad_summary", "--out", "{root}/rep"],
     "RUN_DIR: {root}/bad_summary/summary.json is corrupt"),
    ("compare-corrupt-checkpoint", ["compare", "{root}/bad_state", "--out", "{root}/rep"],
     "RUN_DIR: {root}/bad_state/checkpoints/state-"),
]
TRAIN_CASES = NUMERIC + DATA + CONFIG


def _fmt(items, root):
    return [str(x).replace("{root}", str(root)) for x in items]


def _snapshot(root: Path) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def _expect_one_line(capsys, argv, expect):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("ddl: error: " + expect), err
    return err


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c[0] for c in TRAIN_CASES])
def test_train_bad_input(work, capsys, case):
    """Even with ``--overwrite`` pointing at an existing run, bad input is refused before anything is written."""
    _, args, expect = case
    before = _snapshot(work / "run")
    base = [*TINY, "--out", str(work / "run"), "--overwrite"]
    _expect_one_line(capsys, ["train", *base, *_fmt(args, work)], expect.replace("{root}", str(work)))
    assert _snapshot(work / "run") == before


@pytest.mark.parametrize("case", OUT + RUN_DIRS, ids=[c[0] for c in OUT + RUN_DIRS])
def test_run_dir_bad_input(work, capsys, case):
    _, args, expect = case
    before = _snapshot(work)
    argv = _fmt(args, work)
    if argv[0] not in ("analyze", "compare"):
        argv = ["train", *TINY, *argv]
    elif argv[0] == "analyze":
        argv.append("--no-progress")
    _expect_one_line(capsys, argv, expect.replace("{root}", str(work)))
    assert _snapshot(work) == before


def test_random_numeric_values_are_checked_or_accepted():
    """Property check over random values of every numeric field: validate() either accepts a value inside the
    field's documented range or raises one ConfigError line naming exactly that field's flag."""
    import dataclasses
    import typing

    from ddl.config import _RANGES
    from ddl.errors import ConfigError

    rng = random.Random(0)
    pool = [math.nan, math.inf, -math.inf, -1e300, -1.5, -1, 0, 0.5, 1, 1.0, 2, 3.7, 1e300, True, "1", None]
    hints = typing.get_type_hints(TrainConfig)
    numeric = [f.name for f in dataclasses.fields(TrainConfig)
               if any(t in (int, float) for t in (hints[f.name], *typing.get_args(hints[f.name])))
               or typing.get_args(hints[f.name]) and typing.get_origin(hints[f.name]) is list]
    assert len(numeric) >= 25
    assert set(numeric) <= set(_RANGES), f"numeric fields without a range: {sorted(set(numeric) - set(_RANGES))}"
    for _ in range(600):
        name = rng.choice(numeric)
        value = rng.choice(pool)
        if typing.get_origin(typing.get_args(hints[name])[0] if typing.get_args(hints[name]) else hints[name]) \
                is list or typing.get_origin(hints[name]) is list:
            value = [value]
        try:
            cfg = TrainConfig(**{name: value}).validate()
        except ConfigError as e:
            assert str(e).startswith(f"--{name.replace('_', '-')}: "), (name, value, e)
            assert "\n" not in str(e)
            continue
        got = getattr(cfg, name)
        for v in (got if isinstance(got, list) else [got]):
            if v is None:
                continue
            assert isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), (name, value)
            lo, lo_open, hi, hi_open = _RANGES[name]
            assert lo is None or (v > lo if lo_open else v >= lo), (name, value)
            assert hi is None or (v < hi if hi_open else v <= hi), (name, value)
