"""GPU benchmark (run by ``benchmarks/gpu.sh``): simulated ResNet-18 / DenseNet-121 learners against one model,
the final-layer duality analysis on the GPU, and a 1-rank nccl ``torchrun`` run against the simulator.

    python -m benchmarks.bench_gpu [--budget-s 400] [--parts resnet18 analysis torchrun densenet121]
    python -m benchmarks.bench_gpu --smoke      # every code path on the CPU with tiny sizes (< 1 minute)

Parts (each wrapped: a failure is recorded in the JSON and the next part still runs):

* ``resnet18`` / ``densenet121``: n = 16 simulated learners, local batch b ∈ {32, 512}, synthetic 3×32×32 inputs,
  10 classes.  For each (b, precision ∈ {fp32, bf16 autocast}, memory format ∈ {contiguous, channels_last}) the
  step time of SSGD and DPSGD (ring) is measured side by side (round-robin repeats, median) with one plain model
  (``nn.Module`` + ``torch.optim.SGD``) at the same total batch n·b.  Images/s = n·b / step time; the SSGD rate is
  compared with the paper's 16-V100 rate (320 CIFAR-10 epochs in 0.35 h ≈ 12 800 images/s).
* ``analysis``: ``analysis.decompose`` of a 512→10 (ResNet-18) and a 1024→10 (DenseNet-121) final layer on
  50 000 / 10 000 synthetic features on the GPU (full eigendecomposition), float64 and float32.
* ``torchrun``: ``torchrun --nproc-per-node 1 -m ddl train --backend torchrun --dist-backend nccl`` (small MLP
  on MNIST-5k, SSGD and DPSGD) and ``ddl train --backend sim`` with the same config on the same GPU; the final
  learner weights must agree to ≤ 1e-6.

A time guard keeps the whole run inside ``--budget-s``: each part gets a share of what is left, repeats shrink
to fit, and a case that cannot fit is recorded as skipped (with the reason).  The JSON is rewritten after every
case, so a run stopped from outside still leaves what was measured.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import machine as common_machine

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAPER_IMAGES_PER_S = 50_000 * 320 / (0.35 * 3600)  # SSGD, 16 V100s: 320 CIFAR-10 epochs in 0.35 h
PARTS = ("torchrun", "resnet18", "analysis", "densenet121")  # the order they run in
SHARES = {"torchrun": 0.15, "resnet18": 0.4, "analysis": 0.15, "densenet121": 0.3}  # of the time left
MIN_S = {"torchrun": 90.0}
RESULTS = ROOT / "benchmarks" / "results"  # two launches with CUDA and nccl start-up, whatever the share
SETTINGS = [("off", False), ("off", True), ("bf16", False), ("bf16", True)]  # (amp, channels_last)

FULL = dict(learners=16, batches=(32, 512), image=(3, 32, 32), classes=10,
            repeats={"resnet18": 5, "densenet121": 3}, warmup=2,
            settings={"resnet18": SETTINGS, "densenet121": SETTINGS}, loop_min_batch=256,
            n_train=50_000, n_test=10_000, feature_dims={"resnet18_fc": 512, "densenet121_classifier": 1024},
            tr_learners=4, tr_batch=25, tr_epochs=1, tr_algos=("ssgd", "dpsgd"))  # fmt: skip
# the smoke run exercises every code path once: all settings on ResNet-18, the bf16 + channels_last one on DenseNet
SMOKE = dict(learners=2, batches=(2, 4), image=(3, 8, 8), classes=10,
             repeats={"resnet18": 1, "densenet121": 1}, warmup=0,
             settings={"resnet18": SETTINGS, "densenet121": [("bf16", True)]}, loop_min_batch=4,
             n_train=400, n_test=100, feature_dims={"resnet18_fc": 16, "densenet121_classifier": 24},
             tr_learners=2, tr_batch=25, tr_epochs=1, tr_algos=("dpsgd",))  # fmt: skip


# ---- bookkeeping ------------------------------------------------------------------------------------------------
class Budget:
    """Wall-clock budget of the whole benchmark."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.seconds - self.elapsed()


class Report:
    """The JSON result, rewritten atomically after every case."""

    def __init__(self, path: Path, payload: dict):
        self.path = path
        self.data = payload

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        os.replace(tmp, self.path)


def machine(device: torch.device) -> dict:
    """The common machine description plus the CUDA/cuDNN versions and the GPU's properties."""
    info = common_machine()
    info.update(cuda=torch.version.cuda, device=str(device),
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                    multiprocessors=p.multi_processor_count)  # fmt: skip
        try:
            q = "--query-gpu=driver_version,clocks.max.sm"
            info["nvidia_smi"] = subprocess.run(["nvidia-smi", q, "--format=csv,noheader"], capture_output=True,
                                                text=True, timeout=10).stdout.strip()  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


OOM_ERRORS = tuple({getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError})


def error_record(e: BaseException) -> dict:
    oom = isinstance(e, OOM_ERRORS) or "out of memory" in str(e).lower()
    return {"status": "out_of_memory" if oom else "error", "error": f"{type(e).__name__}: {str(e)[:500]}",
            "traceback": traceback.format_exc()[-2000:]}  # fmt: skip


# ---- training-step cases ----------------------------------------------------------------------------------------
def synthetic_data(n_images: int, image: tuple[int, ...], classes: int, seed: int = 0):
    """Random CIFAR-shaped images (speed does not depend on the pixels; nothing is downloaded)."""
    from ddl.data import Dataset

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_images, *image, generator=g)
    y = torch.randint(0, classes, (n_images,), generator=g)
    xt, yt = x[:64].clone(), y[:64].clone()
    return Dataset("synthetic-cifar", x, y, xt, yt, torch.ones(n_images, dtype=torch.bool), y.clone(), classes)


def make_variants(model_name: str, n: int, b: int, amp: str, channels_last: bool, data, device,
                  loop: bool = False) -> dict:
    """Step functions: one plain model at total batch n·b, SSGD and DPSGD with n simulated learners (and, with
    ``loop``, DPSGD through the per-learner loop, which large local batches may prefer to batched kernels)."""
    from ddl.compute.learners import autocast
    from ddl.config import TrainConfig
    from ddl.loop.train import Trainer

    lr = 0.01
    common = dict(model=model_name, lr=lr, epochs=1, progress=False, device=str(device), amp=amp,
                  out=str(Path(tempfile.gettempdir()) / "ddl-bench-gpu"))  # fmt: skip
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def learner_layout(xs: torch.Tensor) -> torch.Tensor:
        # each learner's [b, C, H, W] slice in the requested memory format
        return xs.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3) if channels_last else xs

    fns = {}
    single = Trainer(TrainConfig(algo="ssgd", learners=1, batch_size=n * b, **common), data=data)
    model = single.model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    it = {"single": 0}

    def single_step():
        i = it["single"] = (it["single"] + 1) % single.stream.steps_per_epoch
        idx = single.stream.indices(i, [0])[0].to(device)
        x = single.x_train[idx].contiguous(memory_format=fmt)
        model.train()
        opt.zero_grad(set_to_none=True)
        with autocast(amp, device):
            out = model(x)
        F.cross_entropy(out.float(), single.y_train[idx]).backward()
        opt.step()

    fns["single_model"] = single_step
    # Large local batches run the learners one after another (sim_mode loop): the batched (vmap) variants of 16
    # learners at b = 512 ran out of the H100's 80 GB, and the out-of-memory left the CUDA context unusable.
    variants = [("ssgd", "loop", "_loop"), ("dpsgd", "loop", "_loop")] if loop else [("ssgd", "auto", ""),
                                                                                     ("dpsgd", "auto", "")]
    for algo, mode, suffix in variants:
        tr = Trainer(TrainConfig(algo=algo, learners=n, batch_size=b, sim_mode=mode, **common), data=data)
        key = f"{algo}_n{n}{suffix}"
        it[key] = 0

        def step(tr=tr, key=key):
            i = it[key] = (it[key] + 1) % tr.stream.steps_per_epoch
            xs, ys = tr.batch(i)
            tr.algo.step(tr.state, learner_layout(xs), ys, lr, 0.0)

        fns[key] = step
    return fns


def time_case(fns: dict, repeats: int, warmup: int, device, seconds_left: float) -> dict:
    """Median step time of each function, round-robin; repeats shrink to fit ``seconds_left``."""
    out: dict = {}
    first: dict = {}
    alive = {}
    for k, f in fns.items():
        try:
            t = time.perf_counter()
            for _ in range(warmup):
                f()
            sync(device)
            first[k] = (time.perf_counter() - t) / max(warmup, 1)
            alive[k] = f
        except Exception as e:  # one variant failing (e.g. out of memory) leaves the others measured
            out[k] = error_record(e)
            free_memory(device)
    per_round = sum(first.values())
    fit = int(max(seconds_left - per_round, 0) // per_round) if per_round > 0 else repeats
    reps = max(1, min(repeats, fit))
    samples = {k: [] for k in alive}
    peak = {}
    for _ in range(reps):
        for k, f in list(alive.items()):
            try:
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                sync(device)
                t = time.perf_counter()
                f()
                sync(device)
                samples[k].append(time.perf_counter() - t)
                if device.type == "cuda":
                    peak[k] = torch.cuda.max_memory_allocated(device) / 2**30
            except Exception as e:
                out[k] = error_record(e)
                del alive[k]
                free_memory(device)
    for k, v in samples.items():
        if k in out:
            continue
        out[k] = {"status": "ok", "median_s": statistics.median(v), "min_s": min(v), "samples_s": v,
                  "warmup_s_per_step": first[k], "peak_memory_gib": peak.get(k)}  # fmt: skip
    out["_repeats"] = reps
    return out


def model_part(name: str, cfg: dict, device, part_deadline: float, report: Report, budget: Budget) -> dict:
    n, res = cfg["learners"], {"cases": {}, "skipped": []}
    report.data["parts"][name] = res
    for b in cfg["batches"]:
        data = synthetic_data(max(2 * n * b, 64), cfg["image"], cfg["classes"])
        all_oom = None  # the first case of this batch size where every variant ran out of memory
        for amp, cl in cfg["settings"][name]:
            key = f"b{b}_{'bf16' if amp == 'bf16' else 'fp32'}_{'channels_last' if cl else 'contiguous'}"
            left = part_deadline - budget.elapsed()
            if all_oom is not None:
                res["skipped"].append({"case": key, "reason": f"every variant ran out of memory in {all_oom}"})
                report.save()
                continue
            if left < 5:
                res["skipped"].append({"case": key, "reason": f"time budget: {left:.0f} s left for part {name}"})
                report.save()
                continue
            t0 = time.perf_counter()
            try:
                fns = make_variants(name, n, b, amp, cl, data, device, loop=b >= cfg["loop_min_batch"])
                case = time_case(fns, cfg["repeats"][name], cfg["warmup"], device, left - 2)
                del fns
            except Exception as e:
                case = error_record(e)
            free_memory(device)
            case.update(learners=n, local_batch=b, total_batch=n * b, amp=amp, channels_last=cl,
                        seconds=time.perf_counter() - t0)  # fmt: skip
            base = case.get("single_model", {})
            if base.get("status") == "ok":
                for k, v in case.items():
                    if isinstance(v, dict) and v.get("status") == "ok":
                        v["images_per_s"] = n * b / v["median_s"]
                        if k != "single_model":
                            v["ratio_to_single_model"] = v["median_s"] / base["median_s"]
            res["cases"][key] = case
            variants = [v for v in case.values() if isinstance(v, dict)]
            if variants and all(v.get("status") == "out_of_memory" for v in variants):
                all_oom = key
            print(f"[{budget.elapsed():6.1f}s] {name} {key}: " + ", ".join(
                f"{k} {v['median_s'] * 1e3:.1f} ms" + (f" ({v['ratio_to_single_model']:.2f}x)"
                                                        if "ratio_to_single_model" in v else "")
                if isinstance(v, dict) and v.get("status") == "ok" else f"{k} {v.get('status')}"
                for k, v in case.items() if isinstance(v, dict)), flush=True)  # fmt: skip
            report.save()
        del data
        free_memory(device)
    return res


# ---- analysis ---------------------------------------------------------------------------------------------------
def analysis_part(cfg: dict, device, part_deadline: float, report: Report, budget: Budget) -> dict:
    from analysis import decompose
    from benchmarks.bench_analysis import checks, synthetic_features

    res = {"cases": {}, "skipped": []}
    report.data["parts"]["analysis"] = res
    cpu_ref = {}
    ref_file = ROOT / "benchmarks" / "results" / "analysis.json"
    if ref_file.is_file():
        try:
            cpu_ref = json.loads(ref_file.read_text()).get("cases", {})
        except (OSError, ValueError):
            cpu_ref = {}
    for case, dim in cfg["feature_dims"].items():
        torch.manual_seed(0)  # the same head as benchmarks/bench_analysis.py (CPU reference numbers)
        train, test = synthetic_features(cfg["n_train"], cfg["n_test"], dim)
        head = torch.nn.Sequential(torch.nn.Linear(dim, 10))
        opt = torch.optim.SGD(head.parameters(), lr=0.5)
        for _ in range(30):
            opt.zero_grad()
            F.cross_entropy(head(train[0]), train[1]).backward()
            opt.step()
        head = head.to(device).eval()
        tr = (train[0].to(device), train[1].to(device))
        te = (test[0].to(device), test[1].to(device))
        for dt in ("float64", "float32"):
            key = f"{case}_{dt}"
            left = part_deadline - budget.elapsed()
            if left < 3:
                res["skipped"].append({"case": key, "reason": f"time budget: {left:.0f} s left for part analysis"})
                continue
            try:
                sync(device)
                t = time.perf_counter()
                r = decompose(head, train=tr, test=te, dtype=dt)
                sync(device)
                rec = {"status": "ok", "seconds": time.perf_counter() - t, "n_train": cfg["n_train"],
                       "n_test": cfg["n_test"], "feature_dim": dim,
                       "stage_s": {k: round(v, 5) for k, v in r.timings.items()}, **checks(r)}  # fmt: skip
                ref = cpu_ref.get(case, {}).get("runs", {}).get(dt)
                if ref and cfg is FULL:
                    rec["cpu_reference"] = {"best_s": ref.get("best_s"), "pairwise_gap": ref.get("pairwise_gap"),
                                            "true_gap": ref.get("true_gap")}  # fmt: skip
                    rec["speedup_vs_cpu"] = ref["best_s"] / rec["seconds"] if ref.get("best_s") else None
            except Exception as e:
                rec = error_record(e)
            res["cases"][key] = rec
            print(f"[{budget.elapsed():6.1f}s] analysis {key}: {rec.get('status')} "
                  f"{rec.get('seconds', float('nan')):.2f} s", flush=True)  # fmt: skip
            report.save()
        del tr, te, head
        free_memory(device)
    return res


# ---- torchrun vs simulator --------------------------------------------------------------------------------------
def torchrun_part(cfg: dict, device, part_deadline: float, report: Report, budget: Budget) -> dict:
    from ddl.commands.cli import main as ddl_main

    res = {"cases": {}, "skipped": []}
    report.data["parts"]["torchrun"] = res
    dist_backend = "nccl" if device.type == "cuda" else "gloo"
    dev = "cuda" if device.type == "cuda" else "cpu"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    work = Path(tempfile.mkdtemp(prefix="ddl-gpu-torchrun-"))
    for algo in cfg["tr_algos"]:
        left = part_deadline - budget.elapsed()
        if left < 10:
            res["skipped"].append({"case": algo, "reason": f"time budget: {left:.0f} s left for part torchrun"})
            continue
        flags = ["--algo", algo, "--model", "mlp", "--dataset", "mnist5k", "--learners", str(cfg["tr_learners"]),
                 "--batch-size", str(cfg["tr_batch"]), "--epochs", str(cfg["tr_epochs"]), "--lr", "0.1",
                 "--device", dev, "--seed", "0", "--no-progress", "--overwrite"]  # fmt: skip
        rec: dict = {"config": flags, "dist_backend": dist_backend}
        try:
            out_tr, out_sim = work / f"{algo}-torchrun", work / f"{algo}-sim"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1",
                   "-m", "ddl", "train", "--backend", "torchrun", "--dist-backend", dist_backend, *flags,
                   "--out", str(out_tr)]  # fmt: skip
            t = time.perf_counter()
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(left - 5, 5), cwd=ROOT)
            rec["torchrun_s"] = time.perf_counter() - t
            rec["torchrun_rc"] = p.returncode
            if p.returncode != 0:
                raise RuntimeError(f"torchrun exited {p.returncode}: {(p.stderr or p.stdout)[-1500:]}")
            t = time.perf_counter()
            rc = ddl_main(["train", "--backend", "sim", *flags, "--out", str(out_sim)])
            rec["sim_s"] = time.perf_counter() - t
            if rc:
                raise RuntimeError(f"ddl train --backend sim returned {rc}")
            w_tr = torch.load(out_tr / "checkpoints" / "learners.pt", map_location="cpu")["weights"]
            w_sim = torch.load(out_sim / "checkpoints" / "learners.pt", map_location="cpu")["weights"]
            diff = float((w_tr.double() - w_sim.double()).abs().max())
            world = json.loads((out_tr / "config.json").read_text()).get("world")
            rec.update(status="ok" if diff <= 1e-6 else "mismatch", max_abs_weight_diff=diff, tolerance=1e-6,
                       world=world, weights_shape=list(w_tr.shape),
                       final_train_loss={"torchrun": json.loads((out_tr / "summary.json").read_text())["final"].get(
                           "train_loss"), "sim": json.loads((out_sim / "summary.json").read_text())["final"].get(
                           "train_loss")})  # fmt: skip
        except SystemExit as e:  # the CLI's one-line error
            rec.update(status="error", error=f"ddl exited {e.code}")
        except Exception as e:
            rec.update(error_record(e))
        res["cases"][algo] = rec
        print(f"[{budget.elapsed():6.1f}s] torchrun {algo}: {rec.get('status')} "
              f"max |Δw| {rec.get('max_abs_weight_diff')}", flush=True)  # fmt: skip
        report.save()
    return res


# ---- summary ----------------------------------------------------------------------------------------------------
def summarise(data: dict) -> dict:
    s: dict = {"paper_16_v100_ssgd_images_per_s": PAPER_IMAGES_PER_S}
    for name in ("resnet18", "densenet121"):
        part = data["parts"].get(name) or {}
        best: dict = {}
        for key, case in (part.get("cases") or {}).items():
            for variant, v in case.items():
                if not (isinstance(v, dict) and v.get("status") == "ok" and "images_per_s" in v):
                    continue
                algo = "single_model" if variant == "single_model" else variant.split("_n")[0] + (
                    "_loop" if variant.endswith("_loop") else "")
                if algo not in best or v["images_per_s"] > best[algo]["images_per_s"]:
                    best[algo] = {"images_per_s": v["images_per_s"], "case": key,
                                  "ratio_to_single_model": v.get("ratio_to_single_model")}  # fmt: skip
        if best:
            s[name] = best
            if "ssgd" in best:
                best["ssgd"]["fraction_of_paper_16_v100_rate"] = best["ssgd"]["images_per_s"] / PAPER_IMAGES_PER_S
    failures = []
    for name, part in data["parts"].items():
        if part.get("status") in ("error", "out_of_memory"):
            failures.append(f"{name}: {part.get('error')}")
        for key, case in (part.get("cases") or {}).items():
            if case.get("status") in ("error", "out_of_memory", "mismatch"):
                failures.append(f"{name}/{key}: {case.get('status')} {case.get('error', '')}")
            for variant, v in case.items():
                if isinstance(v, dict) and v.get("status") in ("error", "out_of_memory"):
                    failures.append(f"{name}/{key}/{variant}: {v['status']} {v.get('error', '')[:200]}")
    s["failures"] = failures
    s["skipped"] = [f"{name}/{x['case']}: {x['reason']}" for name, part in data["parts"].items()
                    for x in part.get("skipped", [])]  # fmt: skip
    return s


def merge_parts(paths: list[Path], out: Path) -> int:
    """One report from the per-part reports (gpu.sh runs each part in its own process)."""
    merged: dict = {}
    for path in paths:
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        if not merged:
            merged = {k: v for k, v in data.items() if k not in ("parts", "summary", "total_s", "budget_s")}
            merged["parts"], merged["total_s"], merged["budget_s"] = {}, 0.0, 0.0
        for name, part in data.get("parts", {}).items():
            into = merged["parts"].setdefault(name, {"cases": {}, "skipped": []})
            for k, v in part.items():
                if k in ("cases",):
                    into["cases"].update(v)
                elif k == "skipped":
                    into["skipped"].extend(v)
                elif k == "seconds":
                    into["seconds"] = into.get("seconds", 0.0) + v
                else:
                    into[k] = v
        merged["total_s"] += data.get("total_s") or 0.0
        merged["budget_s"] += data.get("budget_s") or 0.0
    if not merged:
        print("bench_gpu: no part wrote a report")
        return 1
    merged["process_per_part"] = True
    merged["summary"] = summarise(merged)
    Report(out, merged).save()
    s = merged["summary"]
    for name in ("resnet18", "densenet121"):
        for algo, v in (s.get(name) or {}).items():
            print(f"{name} best {algo}: {v['images_per_s']:.0f} images/s ({v['case']})")
    print(f"merged {len(merged['parts'])} parts into {out}; failures: {len(s['failures'])}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", default=os.environ.get("DDL_GPU_SMOKE") == "1",
                   help="tiny sizes on the CPU: checks every code path (also env DDL_GPU_SMOKE=1)")
    p.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 400; smoke 300)")
    p.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    p.add_argument("--cudnn-benchmark", action="store_true", help="let cuDNN autotune convolution algorithms")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/gpu.json; smoke: a temp file)")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="local batch sizes (default: 32 512)")
    p.add_argument("--merge", nargs="+", default=None, metavar="PART_JSON",
                   help="merge the JSON files of parts run in separate processes into --out, and stop")
    args = p.parse_args(argv)
    if args.merge:
        return merge_parts([Path(x) for x in args.merge], Path(args.out or RESULTS / "gpu.json"))
    cfg = dict(SMOKE if args.smoke else FULL)
    if args.batches:
        cfg["batches"] = tuple(args.batches)
    budget = Budget(args.budget_s if args.budget_s is not None else (300.0 if args.smoke else 400.0))
    if args.smoke:
        device = torch.device("cpu")
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    else:
        if not torch.cuda.is_available():
            print("bench_gpu: no CUDA device (use --smoke to check the code paths on the CPU); nothing to do")
            return 0
        device = torch.device("cuda", 0)
        torch.cuda.set_device(device)
        # off by default (PyTorch's default, what a user gets); autotuning costs warm-up time in a short budget
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    default_out = Path(tempfile.gettempdir()) / "ddl-gpu-smoke.json" if args.smoke else RESULTS / "gpu.json"
    out = Path(args.out) if args.out else default_out
    report = Report(out, {
        "benchmark": "benchmarks/bench_gpu.py", "smoke": args.smoke, "machine": machine(device),
        "budget_s": budget.seconds, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sizes": {k: v for k, v in cfg.items()},
        "settings": {"cudnn_benchmark": torch.backends.cudnn.benchmark,
                     "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                     "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                     "float32_matmul_precision": torch.get_float32_matmul_precision()},
        "parts": {},
    })  # fmt: skip
    report.save()
    runners = {
        "resnet18": lambda d: model_part("resnet18", cfg, device, d, report, budget),
        "densenet121": lambda d: model_part("densenet121", cfg, device, d, report, budget),
        "analysis": lambda d: analysis_part(cfg, device, d, report, budget),
        "torchrun": lambda d: torchrun_part(cfg, device, d, report, budget),
    }
    todo = [x for x in PARTS if x in args.parts]
    for i, name in enumerate(todo):
        share = SHARES[name] / sum(SHARES[x] for x in todo[i:])
        left = max(budget.left(), 0)
        deadline = budget.elapsed() + min(left, max(left * share, MIN_S.get(name, 0.0)))
        print(f"[{budget.elapsed():6.1f}s] part {name}: {deadline - budget.elapsed():.0f} s", flush=True)
        t = time.perf_counter()
        try:
            runners[name](deadline)
        except Exception as e:  # a failing part is recorded; the next one still runs
            report.data["parts"][name] = {**report.data["parts"].get(name, {}), **error_record(e)}
            print(f"part {name} failed: {e}", flush=True)
        report.data["parts"][name]["seconds"] = time.perf_counter() - t
        free_memory(device)
        report.data["summary"] = summarise(report.data)
        report.save()
    report.data["total_s"] = budget.elapsed()
    report.data["summary"] = summarise(report.data)
    report.save()
    s = report.data["summary"]
    for name in ("resnet18", "densenet121"):
        if name in s:
            for algo, v in s[name].items():
                print(f"{name} best {algo}: {v['images_per_s']:.0f} images/s ({v['case']})")
    print(f"failures: {len(s['failures'])}, skipped: {len(s['skipped'])}; wrote {out} in {budget.elapsed():.0f} s")
    for f in s["failures"]:
        print("  failure:", f[:300])
    return 0


if __name__ == "__main__":
    sys.exit(main())
