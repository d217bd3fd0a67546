"""`ddl demo` end to end on a short budget: the regime-map sweep (2 algorithms × 2 lr × 2 B), analysis, report."""

import json
import subprocess
import sys

import pytest

from ddl.commands.demo import DEMO_GRID

pytestmark = pytest.mark.slow  # the whole demo in a real process


def test_demo_short(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "ddl", "demo", "--out", str(out), "--epochs", "3", "--seeds", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"report: {out / 'report' / 'report.html'}" in r.stdout
    runs = sorted(p for p in out.iterdir() if (p / "config.json").is_file())
    assert len(runs) == 8
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["learners"] == 16 and cfg["seed"] == 0 and cfg["epochs"] == 3
        assert run.name == f"algo={cfg['algo']},lr={cfg['lr']!r},batch_size={cfg['batch_size']},seed=0"
        assert (run / "noise.jsonl").read_text().count("\n") >= 1  # measured at step 0 at least
        summary = json.loads((run / "summary.json").read_text())
        if summary["status"] != "diverged":
            assert json.loads((run / "analysis" / "duality.json").read_text())["layer"] == "fc2"
    numbers = json.loads((out / "report" / "numbers.json").read_text())
    (m,) = numbers["regime_maps"]
    assert m["lr"] == DEMO_GRID["lr"] and m["total_batch"] == [16 * b for b in DEMO_GRID["batch_size"]]
    assert "regime_map.png" in numbers["figures"]
    assert (out / "results.csv").read_text().count("\n") == 9
