"""`ddl demo` end to end on a short budget: train SSGD and DPSGD, analyse, compare."""

import json
import subprocess
import sys


def test_demo_short(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "ddl.cli", "demo", "--out", str(out), "--epochs", "3", "--seeds", "0"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"report: {out / 'report' / 'report.html'}" in r.stdout
    for algo in ("ssgd", "dpsgd"):
        run = out / f"{algo}-s0"
        cfg = json.loads((run / "config.json").read_text())
        assert cfg["learners"] == 16 and cfg["batch_size"] == 25 and cfg["algo"] == algo
        assert (run / "noise.jsonl").read_text().count("\n") == 1  # 30 steps, measured every 50: step 0
        res = json.loads((run / "analysis" / "duality.json").read_text())
        assert res["layer"] == "fc2"
    numbers = json.loads((out / "report" / "numbers.json").read_text())
    assert len(numbers["groups"]) == 2
