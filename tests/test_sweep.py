"""``ddl sweep``: grids of real runs on local worker processes and on a real local Ray cluster; skip on rerun,
resume after a real kill, failing runs recorded, the results table against the runs' own files."""

import csv
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from ddl.errors import ConfigError
from ddl.loop.progress import PlainProgress
from ddl.sweep.grid import fmt_value, parse_grid_item
from ddl.sweep.plan import SweepSpec, plan_runs
from ddl.sweep.results import RESULT_COLUMNS
from ddl.sweep.run import run_sweep

# tiny runs: 4 learners × batch 10 on 20 images per class, 2 epochs (10 steps); analysis on 40 test samples
BASE = dict(learners=4, batch_size=10, epochs=2, train_per_class=20, test_per_class=10, eval_samples=100)
BASE_FLAGS = ["--learners", "4", "--batch-size", "10", "--epochs", "2", "--train-per-class", "20",
              "--test-per-class", "10", "--eval-samples", "100"]
ANALYSIS = {"test_samples": 40}
GRID = {"algo": ["ssgd", "dpsgd"], "lr": [0.1, 0.3]}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "DDL_PROGRESS_INTERVAL": "0"}


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parent[int(d.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    out, frontier = [], [pid]
    while frontier:
        kids = [c for c, p in parent.items() if p in frontier]
        out += kids
        frontier = kids
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if alive(p)]


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames), list(r)


def cli(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ddl", *args], capture_output=True, text=True, env=env or ENV,
                          timeout=600)


# ---- parsing (no runs) ------------------------------------------------------------------------------------
def test_grid_values_take_the_config_field_types():
    assert parse_grid_item("lr=0.1,0.5") == ("lr", [0.1, 0.5])
    assert parse_grid_item("batch-size=25,50") == ("batch_size", [25, 50])
    assert parse_grid_item("wd_stop_epoch=none,10") == ("wd_stop_epoch", [None, 10])
    assert parse_grid_item("hidden=30:30,100") == ("hidden", [[30, 30], [100]])
    assert parse_grid_item("bias=true,false") == ("bias", [True, False])
    assert parse_grid_item("algo=ssgd,dpsgd") == ("algo", ["ssgd", "dpsgd"])
    for bad, msg in [("lr=0.1,abc", "^--grid lr: 'abc' is not a valid float"),
                     ("batch_size=2.5", "^--grid batch_size: '2.5' is not a valid int"),
                     ("algo=ssgd,adam", "^--grid algo: 'adam' is not one of ssgd, dpsgd"),
                     ("seed=1,2", "^--grid seed: give seeds with --seeds"),
                     ("device=cpu", "^--grid device: an execution setting"),
                     ("lrate=1", "^--grid lrate: not a train flag"),
                     ("lr=0.1,0.1", "^--grid lr: 0.1 given twice"),
                     ("lr", "^--grid: 'lr' is not KEY=V1,V2")]:
        with pytest.raises(ConfigError, match=msg):
            parse_grid_item(bad)


def test_plan_is_product_times_seeds_named_by_values(tmp_path):
    plans = plan_runs(SweepSpec(base=BASE, grid={"lr": [0.1, 1e-5], "algo": ["ssgd", "dpsgd"]}, seeds=[3, 4]),
                      tmp_path)
    assert [p.name for p in plans[:3]] == ["lr=0.1,algo=ssgd,seed=3", "lr=0.1,algo=ssgd,seed=4",
                                           "lr=0.1,algo=dpsgd,seed=3"]
    assert len(plans) == 8 and len({p.path for p in plans}) == 8
    p = plans[-1]
    assert (p.config.lr, p.config.algo, p.config.seed, p.config.learners) == (1e-5, "dpsgd", 4, 4)
    assert p.path == tmp_path.absolute() / "lr=1e-05,algo=dpsgd,seed=4" and p.config.out == str(p.path)
    assert fmt_value([30, 30]) == "30:30" and fmt_value(None) == "none"
    with pytest.raises(ConfigError, match="^--lr: must be > 0"):
        plan_runs(SweepSpec(base=BASE, grid={"lr": [0.1, -1.0]}), tmp_path)


def test_plain_progress_prints_lines_not_redraws(capsys):
    bar = PlainProgress(4, desc="sweep", unit="run", interval=3600)
    bar.update(1)
    bar.update(1)  # within the interval: silent
    bar.set_postfix(loss="0.5")
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1
    assert err.startswith("sweep: 2/4 run (50%)") and "ETA" in err and err.rstrip().endswith("loss=0.5")


def test_train_progress_is_plain_lines_when_not_a_terminal(tmp_path):
    r = cli(["train", *BASE_FLAGS, "--out", str(tmp_path / "run")])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "\r" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("ssgd n=4: ")]
    assert lines and lines[-1].startswith("ssgd n=4: 10/10 step (100%)") and "test_acc=" in lines[-1]


# ---- a 2 × 2 sweep on 2 local worker processes ------------------------------------------------------------
@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    args = ["sweep", *BASE_FLAGS, "--grid", "algo=ssgd,dpsgd", "--grid", "lr=0.1,0.3", "--seeds", "0",
            "--jobs", "2", "--out", str(out), "--test-samples", "40", "--no-report"]
    r = cli(args)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, args, r


def test_local_sweep_end_to_end(local_sweep):
    out, _, r = local_sweep
    assert "4 runs (4 run now, 0 skipped, 0 failed)" in r.stdout
    assert "local executor, 2 at a time, 1 thread per run" in r.stderr
    assert "\r" not in r.stderr  # not a terminal: plain lines, no redrawn bar
    assert sum(line.startswith("[") for line in r.stderr.splitlines()) == 4  # one line per finished run
    cols, rows = read_csv(out / "results.csv")
    assert cols == ["algo", "lr", *RESULT_COLUMNS]
    assert [(r_["algo"], r_["lr"], r_["seed"]) for r_ in rows] == [
        ("ssgd", "0.1", "0"), ("ssgd", "0.3", "0"), ("dpsgd", "0.1", "0"), ("dpsgd", "0.3", "0")]
    from analysis.result import NULL_EIGENVALUE_RTOL, DualityResult

    for row in rows:
        run = out / f"algo={row['algo']},lr={row['lr']},seed=0"
        cfg = json.loads((run / "config.json").read_text())
        assert (cfg["algo"], cfg["lr"], cfg["seed"], cfg["learners"], cfg["epochs"]) == \
            (row["algo"], float(row["lr"]), 0, 4, 2)
        summary = json.loads((run / "summary.json").read_text())
        res = DualityResult.load(run / "analysis")
        assert res.n_test == 40
        assert row["status"] == summary["status"] == "max_epochs" and int(row["steps"]) == summary["steps"] == 10
        assert float(row["epochs"]) == 2.0
        assert float(row["test_error"]) == pytest.approx(1 - summary["final"]["test_acc"])
        assert float(row["train_loss"]) == pytest.approx(summary["final"]["train_loss"])
        # two gaps, two columns: the analysis's (clean training set) and the final evaluation's (its subsets)
        assert float(row["true_gap"]) == pytest.approx(res.test_loss - res.train_loss)
        assert float(row["eval_gap"]) == pytest.approx(summary["final"]["test_loss"] - summary["final"]["train_loss"])
        assert row["layer"] == res.layer == "fc2"  # the MLP's default analysis layer, as for `ddl analyze`
        assert float(row["aw_gap"]) == pytest.approx(np.mean(res.delta_loss))
        assert float(row["sharp_gap"]) + float(row["flat_gap"]) + res.mean_gap == pytest.approx(float(row["aw_gap"]),
                                                                                              abs=1e-9)
        assert int(row["n_sharp"]) == res.n_sharp
        order = np.argsort(-res.eigenvalues)  # the sharpest directions: largest Hessian eigenvalues
        assert float(row["size"]) == pytest.approx(sum(float(s) for s in res.sigma_w))
        null = np.abs(res.eigenvalues) <= NULL_EIGENVALUE_RTOL * np.abs(res.eigenvalues).max()
        assert float(row["size_null"]) == pytest.approx(sum(float(s) for s in res.sigma_w[null]), abs=1e-12)
        assert float(row["size_curved"]) + float(row["size_null"]) == pytest.approx(float(row["size"]))
        assert float(row["sigma_g_top10"]) == pytest.approx(np.mean(res.sigma_g[order[:10]]))
        assert float(row["layer_lambda_max"]) == pytest.approx(max(res.eigenvalues))
        assert float(row["wall_s"]) >= summary["wall_time_s"]


def test_rerun_skips_finished_runs(local_sweep):
    out, args, _ = local_sweep
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/summary.json")}
    before.update({p: p.stat().st_mtime_ns for p in out.glob("*/analysis/duality.npz")})
    assert len(before) == 8
    r = cli(args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "4 runs (0 run now, 4 skipped, 0 failed)" in r.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    # the same grid with other base flags would silently mix two experiments: one clear line instead
    r = cli([a if a != "2" else "3" for a in args])  # --epochs 3 (and --jobs 3)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("ddl: error: --out: ") and "epochs: 2 → 3" in r.stderr


def test_failing_and_diverging_runs_are_recorded(tmp_path):
    """A run whose data cannot be loaded fails, one with a huge learning rate diverges; the others finish."""
    spec = SweepSpec(base={**BASE, "data_dir": str(tmp_path / "empty")},
                     grid={"dataset": ["mnist5k", "cifar10"], "lr": [0.1, 1e4]}, seeds=[0], analyze=True,
                     analysis=ANALYSIS)  # only the one run that trains well is analysed
    res = run_sweep(spec, tmp_path / "s", jobs=2, progress=False, report=False)
    assert sorted(res.failed) == ["dataset=cifar10,lr=0.1,seed=0", "dataset=cifar10,lr=10000.0,seed=0"]
    _, rows = read_csv(res.results)
    status = {(r["dataset"], r["lr"]): r["status"] for r in rows}
    assert status == {("mnist5k", "0.1"): "max_epochs", ("mnist5k", "10000.0"): "diverged",
                      ("cifar10", "0.1"): "failed", ("cifar10", "10000.0"): "failed"}
    err = (tmp_path / "s" / "dataset=cifar10,lr=0.1,seed=0" / "error.txt").read_text()
    assert "Traceback" in err
    ok = next(r for r in rows if r["status"] == "max_epochs")
    assert ok["aw_gap"] and ok["size"]  # analysed
    div = next(r for r in rows if r["status"] == "diverged")
    assert div["aw_gap"] == "" and div["steps"]  # not analysed, but its row is kept
    # no fallback: a run without an analysis has an empty true gap and layer (its evaluation gap is its own column)
    assert div["true_gap"] == div["layer"] == div["size"] == div["layer_lambda_max"] == ""
    assert ok["true_gap"] and ok["layer"] == "fc2" and ok["eval_gap"]


def test_resume_after_kill(tmp_path):
    """kill -9 the sweep while runs are going on: its workers die with it; the same command then finishes the
    sweep, skipping the runs done before and continuing the interrupted ones from their checkpoints (one per
    epoch here), with the same records as uninterrupted runs."""
    out = tmp_path / "s"
    # runs of 10 epochs × 100 steps (batch 2 on 200 images), long enough to be killed in the middle
    args = [sys.executable, "-m", "ddl", "sweep", *BASE_FLAGS, "--learners", "1", "--batch-size", "2",
            "--epochs", "10", "--grid", "lr=0.1,0.2", "--seeds", "0", "1", "--jobs", "2", "--out", str(out),
            "--no-analyze", "--no-report", "--checkpoint-every", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + 300

    def in_first_half(c: Path) -> bool:  # a checkpoint past step 0 of a run with at least half of it to go
        return not (c.parents[1] / "summary.json").exists() and 0 < int(c.stem.split("-")[1]) <= 500

    workers = []
    try:
        while time.monotonic() < deadline:
            time.sleep(0.2)
            if proc.poll() is not None:
                pytest.fail("the sweep ended before it could be killed")
            workers = descendants(proc.pid)
            if list(out.glob("*/summary.json")) and any(in_first_half(c) for c in out.glob("*/checkpoints/*.pt")):
                break
        else:
            pytest.fail("no run finished in time")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # the worker processes die with the sweep (none is left writing into the runs)
    assert workers and not wait_gone(workers, 20)
    finished_before = {p.parent.name for p in out.glob("*/summary.json")}
    interrupted = {c.parents[1].name for c in out.glob("*/checkpoints/state-*.pt")
                   if c.parents[1].name not in finished_before and int(c.stem.split("-")[1]) > 0}
    assert 1 <= len(finished_before) < 4 and interrupted
    _, rows = read_csv(out / "results.csv")
    assert len(rows) == 4 and "pending" in {r["status"] for r in rows}
    r = cli(args[3:])
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"4 runs ({4 - len(finished_before)} run now, {len(finished_before)} skipped, 0 failed)" in r.stdout
    _, rows = read_csv(out / "results.csv")
    assert {r["status"] for r in rows} == {"max_epochs"} and {r["steps"] for r in rows} == {"1000"}
    for name in interrupted:
        assert "continued from its last checkpoint" in (out / name / "sweep.log").read_text()
    for run in out.glob("*=*"):  # continued or trained again, every run has one record per epoch, in order
        epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [float(e) for e in range(1, 11)]


# ---- the same 2 × 2 sweep as Ray tasks on a real local cluster --------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """A Ray head of our own (2 CPUs), reached by address; stopped by killing its processes (never `ray stop`,
    which would stop every Ray cluster on the machine)."""
    port = _free_port()
    ports = {f"--{k}": str(_free_port()) for k in ("ray-client-server-port", "dashboard-agent-listen-port",
                                                  "dashboard-agent-grpc-port", "metrics-export-port",
                                                  "runtime-env-agent-port", "node-manager-port",
                                                  "object-manager-port")}
    ray_bin = Path(sys.executable).parent / "ray"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 characters
    cmd = [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
           "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}", "--node-ip-address=127.0.0.1",
           *[f"{k}={v}" for k, v in ports.items()]]
    # token authentication, as launch/ray_cluster.sh starts a cluster: a token of our own, given to the driver too
    env = {**ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    head = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env=env)
    addr = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the GCS listens once the head is up
            if head.poll() is not None:
                pytest.fail("ray start --head exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the Ray head did not come up")
        yield addr, env
    finally:
        procs = [head.pid, *descendants(head.pid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in procs:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            if not wait_gone(procs, 15):
                break
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_sweep_on_a_local_cluster(ray_head, tmp_path):
    out = tmp_path / "s"
    address, env = ray_head
    r = cli(["sweep", *BASE_FLAGS, "--grid", "algo=ssgd,dpsgd", "--grid", "lr=0.1,0.3", "--seeds", "0",
             "--executor", "ray", "--address", address, "--cpus-per-run", "1", "--out", str(out),
             "--test-samples", "40", "--no-report"], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 runs (4 run now, 0 skipped, 0 failed)" in r.stdout
    cols, rows = read_csv(out / "results.csv")
    assert cols == ["algo", "lr", *RESULT_COLUMNS] and len(rows) == 4
    assert {r_["status"] for r_ in rows} == {"max_epochs"} and all(r_["aw_gap"] for r_ in rows)
    for run in out.glob("*=*"):  # each run was a task in a worker process of the cluster
        assert "(ray node " in (run / "sweep.log").read_text().splitlines()[0]


# ---- the sweep report -------------------------------------------------------------------------------------
def test_sweep_report_numbers_and_rendering(local_sweep, tmp_path):
    """The report of the 2 × 2 sweep (algo × lr: a one-row regime map): its numbers agree with results.csv, and it
    renders in headless Chromium with every figure loaded."""
    from test_report import _chromium, _render

    from ddl.report.sweep import build_sweep_report

    out, _, _ = local_sweep
    html = build_sweep_report(out, tmp_path / "report")
    assert html == tmp_path / "report" / "report.html"
    numbers = json.loads((tmp_path / "report" / "numbers.json").read_text())
    _, rows = read_csv(out / "results.csv")
    by = {(r["algo"], float(r["lr"])): r for r in rows}
    for cell in numbers["cells"]:
        row = by[(cell["values"]["algo"], cell["values"]["lr"])]
        assert cell["numbers"]["test_err"]["mean"] == pytest.approx(float(row["test_error"]))
        assert cell["numbers"]["pairwise_gap"]["mean"] == pytest.approx(float(row["aw_gap"]))
        assert cell["numbers"]["sigma_w_sum"]["mean"] == pytest.approx(float(row["size"]))
    (m,) = numbers["regime_maps"]
    assert m["lr"] == [0.1, 0.3] and m["total_batch"] == [40]
    from ddl.report.outcome import failure
    from ddl.report.runs import read_run

    def trained(algo, lr):
        return failure(read_run(out / f"algo={algo},lr={lr!r},seed=0")) is None

    for algo in ("ssgd", "dpsgd"):  # the map's error is over the seeds that trained: none (null) where all failed
        assert m["test_error"][algo][0] == [pytest.approx(float(by[(algo, lr)]["test_error"])) if trained(algo, lr)
                                            else None for lr in (0.1, 0.3)]  # fmt: skip
    # the most different cell: by |difference|, only among cells where both trained (report/outcome.py), else none

    d = {lr: abs(float(by[("dpsgd", lr)]["test_error"]) - float(by[("ssgd", lr)]["test_error"])) for lr in (0.1, 0.3)}
    both = [lr for lr in (0.1, 0.3) if trained("ssgd", lr) and trained("dpsgd", lr)]
    expect = ["dpsgd", 0, [0.1, 0.3].index(max(both, key=d.get))] if both else None
    assert m["most_different"] == expect
    assert m["rows"] == [[4, 10]] and m["baseline"] == "ssgd"
    assert {"regime_map.png", "gap_lr.png", "spectra_lr.png", "trends_lr.png"} <= set(numbers["figures"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert all(f"({name})" in md for name in numbers["figures"])
    # how the numbers were measured: the split rule named, every failed check listed
    assert numbers["split"].startswith("Sharp/flat split of every duality analysis: count 10")
    assert numbers["split"] in md
    assert all(c in md for c in numbers["checks"]) and ("Checks that failed" in md) == bool(numbers["checks"])
    browser = _chromium()
    assert browser is not None, "chromium is not installed (Debian: apt-get install chromium); `make test` installs it"
    res = _render(browser, html.read_text(), tmp_path)
    assert res["errors"] == []
    assert len(res["images"]) == len(numbers["figures"])
    assert all(i["ok"] and i["w"] > 100 and i["h"] > 100 for i in res["images"]), res["images"]


def test_recipes_parse_and_plan(tmp_path):
    """Every recipe in launch/recipes is a valid spec: its grid, base flags and analysis options resolve."""
    from ddl.sweep.analysis import AnalysisRequest
    from ddl.sweep.plan import load_spec

    recipes = sorted((Path(__file__).resolve().parents[1] / "launch" / "recipes").glob("*.yaml"))
    assert len(recipes) >= 10
    for path in recipes:
        spec, execution = load_spec(path)
        plans = plan_runs(spec, tmp_path / path.stem)
        assert len(plans) == len(spec.seeds) * int(np.prod([len(v) for v in spec.grid.values()])), path.name
        assert spec.title and spec.analyze
        AnalysisRequest.resolve(spec.analysis)
    with pytest.raises(ConfigError, match="^SPEC: .*unknown keys gird"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("gird: {lr: [0.1]}\n")
        load_spec(bad)


def test_deep_case_recipe_keeps_its_stated_sizing(tmp_path):
    """The CPU case study as docs/case_study.md states it: the paper's B/N ratio, both models and algorithms at two
    learning rates over 2 seeds, and ≥ 20 noise measurements in every run (steps as the data stream counts them)."""
    from ddl.sweep.plan import load_spec

    spec, _ = load_spec(Path(__file__).resolve().parents[1] / "launch" / "recipes" / "fashion_deep_case.yaml")
    plans = plan_runs(spec, tmp_path / "case")
    assert len(plans) == 16 and sorted(spec.seeds) == [0, 1]
    for plan in plans:
        cfg = plan.config
        n_train = cfg.train_per_class * 10
        assert 0.15 <= cfg.learners * cfg.batch_size / n_train <= 0.17  # the paper's 8192 / 50 000
        steps = cfg.epochs * (n_train // (cfg.learners * cfg.batch_size))
        assert len(range(0, steps, cfg.measure_noise)) >= 20
    assert {p.config.model for p in plans} == {"resnet18", "densenet121"}
    assert {p.config.algo for p in plans} == {"ssgd", "dpsgd"} and len({p.config.lr for p in plans}) == 2


def test_grid_accepts_the_algorithm_fields():
    from ddl.sweep.grid import normalize_grid, parse_grid_item

    assert parse_grid_item("algo=ssgd,local_sgd,gossip_pga,gradient_tracking,choco")[1][-1] == "choco"
    assert parse_grid_item("period=1,4") == ("period", [1, 4])
    assert parse_grid_item("compressor=none,topk,qsgd") == ("compressor", ["none", "topk", "qsgd"])
    assert parse_grid_item("compress-ratio=0.1,1") == ("compress_ratio", [0.1, 1.0])
    assert normalize_grid({"consensus_step": [0.5, "1"]}) == {"consensus_step": [0.5, 1.0]}
    with pytest.raises(ConfigError, match="period"):
        parse_grid_item("period=two")
