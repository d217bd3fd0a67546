"""CNN learners against one model on the CPU: time per epoch (LeNet-style ``cnn``) and per step (ResNet-18),
measured side by side in one run, with an operator profile of what the simulated learners spend their time on.

    python -m benchmarks.bench_cnn [--cases cnn resnet18] [--repeats 5] [--profile-steps 3]

* ``cnn``: MNIST-5k (4 000 training images), total batch 400 = one model at batch 400 vs n = 16 learners at b = 25:
  SSGD and DPSGD (ring) through the default path (``auto``: the hand-written stacked CNN of
  ``ddl.compute.fastcnn``) and, for comparison, the generic ``vmap`` path.  A repeat is one full epoch (10 steps);
  the median is reported.
  Target: DPSGD ≤ 1.3 × one model.
* ``resnet18``: MNIST-5k-shaped inputs, 64 images per step = one model at batch 64 vs 16 learners at b = 4
  (SSGD; DPSGD through ``vmap`` and through the per-learner ``loop``).  A repeat is two steps.
* ``resnet18_w16`` / ``densenet121_w8`` (not in the default set; ``--out cnn_cpu_deep.json``): the reduced widths
  of the CPU case study (ResNet-18 base width 16, DenseNet-121 growth rate 8) on MNIST-5k's 1 × 28 × 28 images,
  total batch 512 = one model at batch 512 vs 16 DPSGD learners at b = 32 through the default path (``auto``: the
  learner-stacked network of ``ddl.compute.fastdeep``, in ``channels_last`` and in NCHW ``contiguous`` memory
  format; ``default_layout`` says which one ``auto`` uses), the generic ``vmap`` path and the per-learner ``loop``;
  the one model also in channels_last (``single_model_channels_last``).
  A repeat is one step; seconds per epoch are per-step medians × steps per epoch.
  Target: DPSGD ≤ 1.5 × one model.  ``resnet18_w64`` is the paper's width, one model vs the default path only.

The single model is plain PyTorch (``nn.Module`` + ``torch.optim.SGD``).  Every variant draws its minibatches from
the same in-memory tensors, so the ratios compare the training step alone.  This machine is shared (2 cores, other
people's jobs): the load average before and after each case is recorded, and ratios of medians measured
round-robin are more trustworthy than the absolute times; the process CPU time of each variant is recorded too
(less sensitive to other jobs than wall time).  Writes ``benchmarks/results/cnn_cpu.json``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import write  # noqa: E402
from ddl.config import TrainConfig  # noqa: E402
from ddl.loop.train import Trainer  # noqa: E402

CASES = {
    "cnn": dict(model="cnn", learners=16, batch_size=25, steps=None,  # None: one epoch per repeat
                variants=[("ssgd", "auto"), ("dpsgd", "auto"), ("dpsgd", "vmap")]),
    "resnet18": dict(model="resnet18", learners=16, batch_size=4, steps=2,
                     variants=[("ssgd", "auto"), ("dpsgd", "auto"), ("dpsgd", "loop")]),
    "resnet18_w16": dict(model="resnet18", width=16, learners=16, batch_size=32, steps=1, warmup=1,
                         single_channels_last=True,
                         variants=[("dpsgd", "auto", "channels_last"), ("dpsgd", "auto", "contiguous"),
                                   ("dpsgd", "vmap"), ("dpsgd", "loop")]),
    "densenet121_w8": dict(model="densenet121", width=8, learners=16, batch_size=32, steps=1, warmup=1,
                           single_channels_last=True,
                           variants=[("dpsgd", "auto", "channels_last"), ("dpsgd", "auto", "contiguous"),
                                     ("dpsgd", "vmap"), ("dpsgd", "loop")]),
    "resnet18_w64": dict(model="resnet18", width=64, learners=16, batch_size=32, steps=1, warmup=1,
                         variants=[("dpsgd", "auto")]),
}  # fmt: skip
DEFAULT_CASES = ("cnn", "resnet18")


def step_functions(case: dict, data) -> tuple[dict, int, dict]:
    n, b, lr = case["learners"], case["batch_size"], 0.05
    common = dict(model=case["model"], width=case.get("width"), lr=lr, epochs=1, progress=False,
                  out="/tmp/ddl-bench-cnn")
    single = Trainer(TrainConfig(algo="ssgd", learners=1, batch_size=n * b, **common), data=data)
    model = copy.deepcopy(single.model)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    spe = single.stream.steps_per_epoch
    it = {"single_model": 0}

    def single_step():
        i = it["single_model"] = (it["single_model"] + 1) % spe
        idx = single.stream.indices(i, [0])[0]
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(single.x_train[idx]), single.y_train[idx]).backward()
        opt.step()

    fns = {"single_model": single_step}
    info = {}
    if case.get("single_channels_last"):  # the one model in the memory format the stacked learners use
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        opt_cl = torch.optim.SGD(model_cl.parameters(), lr=lr)
        it["single_model_channels_last"] = 0

        def single_step_cl():
            i = it["single_model_channels_last"] = (it["single_model_channels_last"] + 1) % spe
            idx = single.stream.indices(i, [0])[0]
            model_cl.train()
            opt_cl.zero_grad(set_to_none=True)
            x = single.x_train[idx].contiguous(memory_format=torch.channels_last)
            F.cross_entropy(model_cl(x), single.y_train[idx]).backward()
            opt_cl.step()

        fns["single_model_channels_last"] = single_step_cl
    for algo, mode, *layout in case["variants"]:
        tr = Trainer(TrainConfig(algo=algo, learners=n, batch_size=b, sim_mode=mode, **common), data=data)
        key = f"{algo}_n{n}" + ("" if mode == "auto" else f"_{mode}") + "".join(f"_{x}" for x in layout)
        if layout:  # the stacked network in an explicit memory format (without: the path's default)
            info["default_layout"] = "channels_last" if tr.gradients.stacked.channels_last else "contiguous"
            tr.gradients.stacked.channels_last = layout == ["channels_last"]
        it[key] = 0

        def step(tr=tr, key=key):
            i = it[key] = (it[key] + 1) % spe
            xs, ys = tr.batch(i)
            tr.algo.step(tr.state, xs, ys, lr, 0.0)

        fns[key] = step
    return fns, spe, info


def measure(fns: dict, steps: int, repeats: int, warmup: int = 2) -> dict:
    """Median seconds per ``steps`` steps of each variant, round-robin so that load drift hits all alike."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    samples = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(steps):
                f()
            samples[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    # process CPU time (all threads) is less sensitive than wall time to other jobs taking the cores
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "samples_s": v,
                "cpu_median_s": statistics.median(cpu[k]), "cpu_samples_s": cpu[k]} for k, v in samples.items()}


def profile(fn, steps: int, top: int = 12) -> dict:
    """Self CPU time of the top operators over ``steps`` calls (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            fn()
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1.0
    return {
        "self_cpu_total_s_per_step": total / 1e6 / steps,
        "top_ops": [{"op": e.key, "self_cpu_s_per_step": e.self_cpu_time_total / 1e6 / steps,
                     "share": e.self_cpu_time_total / total, "calls_per_step": e.count / steps}
                    for e in rows[:top]],
    }  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(DEFAULT_CASES), choices=list(CASES))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile-steps", type=int, default=3, help="steps profiled per variant (0: no profile)")
    p.add_argument("--out", default="cnn_cpu.json", help="file name under benchmarks/results/")
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from ddl.data import load_dataset

    data = load_dataset("mnist5k")
    results = {}
    for name in args.cases:
        case = CASES[name]
        fns, spe, info = step_functions(case, data)
        steps = case["steps"] or spe
        load0 = os.getloadavg()
        timings = measure(fns, steps, args.repeats, case.get("warmup", 2))
        base = timings["single_model"]["median_s"]
        res = {
            "model": case["model"], "width": case.get("width"), "dataset": "mnist5k", "learners": case["learners"],
            **info,
            "local_batch": case["batch_size"], "total_batch": case["learners"] * case["batch_size"],
            "steps_per_repeat": steps, "steps_per_epoch": spe, "repeat_is_one_epoch": steps == spe,
            "timings": timings,
            "ratio_to_single_model": {k: v["median_s"] / base for k, v in timings.items() if k != "single_model"},
            "cpu_time_ratio_to_single_model": {k: v["cpu_median_s"] / timings["single_model"]["cpu_median_s"]
                                               for k, v in timings.items() if k != "single_model"},
            "seconds_per_epoch": {k: v["median_s"] / steps * spe for k, v in timings.items()},
            "loadavg_before_after": [list(load0), list(os.getloadavg())],
        }  # fmt: skip
        if args.profile_steps:
            res["profile"] = {k: profile(f, args.profile_steps) for k, f in fns.items()}
        results[name] = res
        print(f"{name}: " + ", ".join(f"{k} {v['median_s'] / steps * 1e3:.1f} ms/step"
                                       + (f" ({res['ratio_to_single_model'][k]:.2f}x wall, "
                                          f"{res['cpu_time_ratio_to_single_model'][k]:.2f}x CPU time)"
                                          if k != "single_model" else "")
                                       for k, v in timings.items()), flush=True)  # fmt: skip
        path = write(args.out, {  # after every case: a long run that is stopped keeps the cases it measured
            "what": "simulated CNN learners vs one model (nn.Module + torch.optim.SGD) at the same total batch, CPU",
            "target": "cnn: dpsgd_n16 <= 1.3 x single_model per epoch; resnet18_w16, densenet121_w8: dpsgd_n16 "
                      "<= 1.5 x", "torch_threads": torch.get_num_threads(), "cases": results,
            "note": "shared 2-core machine: absolute times are noisy; ratios are medians of round-robin repeats",
        })  # fmt: skip
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
