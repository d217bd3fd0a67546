"""The GPU benchmark script runs its code paths on the CPU (``--smoke``), records skipped cases under its time
guard, and ``gpu.sh`` exits cleanly with one message where there is no GPU.  (No timings are asserted.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks import bench_gpu

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_sh_without_gpu_says_so_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable, "DDL_GPU_SMOKE": "0"}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "no CUDA GPU is visible" in r.stdout


def test_smoke_runs_every_part(tmp_path, monkeypatch):
    # one setting per model keeps the test short; the full smoke (bash benchmarks/gpu.sh --smoke) runs all four
    smoke = {**bench_gpu.SMOKE, "settings": {"resnet18": [("bf16", True)], "densenet121": [("off", False)]}}
    monkeypatch.setattr(bench_gpu, "SMOKE", smoke)
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--smoke", "--parts", "torchrun", "resnet18", "analysis", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["smoke"] and d["machine"]["device"] == "cpu" and d["summary"]["failures"] == []
    cases = d["parts"]["resnet18"]["cases"]
    # batched learners at the small local batch, the per-learner loop at the large one
    for key, variants in (("b2_bf16_channels_last", ("ssgd_n2", "dpsgd_n2")),
                          ("b4_bf16_channels_last", ("ssgd_n2_loop", "dpsgd_n2_loop"))):
        for variant in ("single_model", *variants):
            assert cases[key][variant]["status"] == "ok" and cases[key][variant]["median_s"] > 0
            assert cases[key][variant]["images_per_s"] > 0
        assert cases[key][variants[1]]["ratio_to_single_model"] > 0
    assert set(d["parts"]["analysis"]["cases"]) == {
        "resnet18_fc_float64", "resnet18_fc_float32", "densenet121_classifier_float64",
        "densenet121_classifier_float32"}
    for rec in d["parts"]["analysis"]["cases"].values():
        assert rec["status"] == "ok" and rec["decomposition_error"] < 1e-3
    tr = d["parts"]["torchrun"]["cases"]["dpsgd"]
    assert tr["status"] == "ok" and tr["max_abs_weight_diff"] <= 1e-6
    assert {k: tr["world"][k] for k in ("backend", "workers", "device")} == {"backend": "torchrun", "workers": 1,
                                                                          "device": "cpu"}
    assert "resnet18" in d["summary"] and d["summary"]["skipped"] == []


def test_time_guard_records_skipped_cases(tmp_path):
    out = tmp_path / "gpu.json"
    assert bench_gpu.main(["--smoke", "--budget-s", "0.01", "--parts", "resnet18", "analysis",
                           "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["parts"]["resnet18"]["cases"] == {} and d["parts"]["analysis"]["cases"] == {}
    skipped = d["summary"]["skipped"]
    assert len(skipped) == 2 * 4 + 4 and all("time budget" in s for s in skipped)
