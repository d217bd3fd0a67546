"""How much do the noise meter's approximations matter?  (docs/measurements.md, issue 9 items 2 and 10)

At the final learner weights of a trained run (default: the demo's DPSGD, n = 16, B = 400):

* mean ‖ξ‖² over several minibatches with the exact full gradient (all training samples) against the full
  gradient over 1 000 samples (a stratified sample, and the old meter's unstratified clean sample);
* the top-5 Hessian eigenvalues of the whole model: the production Lanczos (tolerance 1e-6, warm start from
  scratch here) against the old fixed 20 iterations and (with ``--reference``) an independent reference (curvlinops'
  Hessian operator + scipy ``eigsh``, tol 1e-8), with iterations, residuals and wall time.

    PYTHONPATH=. python -m benchmarks.noise_reference RUN_DIR

Writes ``benchmarks/results/noise_reference.json`` (machine description included; timings on a shared CPU are
noisy).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import RESULTS, machine


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--batches", type=int, default=10, help="minibatches to average ‖ξ‖² over")
    p.add_argument("--reference", action="store_true", help="also run curvlinops + scipy eigsh (slow)")
    a = p.parse_args(argv)
    from analysis.lanczos import lanczos_topk
    from ddl.data import stratified_subset
    from ddl.loop.train import Trainer
    from ddl.measure.noise import NoiseMeter
    from ddl.rundir.layout import load_run

    run = load_run(a.run_dir)
    cfg = dataclasses.replace(run.config, measure_noise=1, noise_samples=None, progress=False,
                              out=tempfile.mkdtemp(prefix="noise-ref-"), device="cpu")
    tr = Trainer(cfg)
    W_init = tr.state.W.clone()
    W_final = torch.load(Path(a.run_dir) / "checkpoints" / "learners.pt")["weights"].to(tr.dtype)
    d = tr.data
    clean = torch.nonzero(d.clean_mask).flatten()
    old_pick = clean[torch.randperm(clean.numel(), generator=torch.Generator().manual_seed(cfg.seed + 4242))[:1000]]
    strat = stratified_subset(d.y_train, 1000, cfg.seed, "noise")
    refs = {"exact (all)": torch.arange(d.n_train), "stratified 1000": strat, "old: first 1000 of a shuffle": old_pick}
    out = {"run": str(a.run_dir), "n_train": d.n_train, "params": int(W_init.shape[1]), "points": {},
           "class_counts": {name: torch.bincount(d.y_train[idx], minlength=10).tolist() for name, idx in refs.items()}}
    for point, W in (("initial weights", W_init), ("final weights", W_final)):
        tr.state.W = W
        w_bar, bufs = tr.averaged()
        res = out["points"][point] = {"xi_sq": {}, "lanczos": {}}
        for name, idx in refs.items():
            meter = NoiseMeter(tr.gradients.eval_loss, tr.comm, tr.x_train[idx], tr.y_train[idx], top_k=1,
                               max_iter=2)
            vals = [meter.measure(s, W, w_bar, bufs, *tr.batch(s))["ssgd_noise_sq"] for s in range(a.batches)]
            res["xi_sq"][name] = float(np.mean(vals))
            print(f"{point}: mean ‖ξ‖² with {name:30s}: {np.mean(vals):.4g}", flush=True)
        w64 = w_bar.double()

        def matvec(v, w64=w64):
            return tr.noise.full_hvp(w64, v, {})

        for name, kw in {"production (tol 1e-6, cap 300)": dict(tol=cfg.noise_lanczos_tol, max_iter=300),
                         "old (20 iterations)": dict(tol=1e-8, max_iter=20)}.items():
            t = time.perf_counter()
            ev, _, info = lanczos_topk(matvec, w64.numel(), 5, tol=kw["tol"], max_iter=kw["max_iter"], seed=0,
                                       warn=False)
            res["lanczos"][name] = {"top5": ev.tolist(), "iterations": info.iterations,
                                    "max_residual": info.max_residual,
                                    "rel_residual": info.max_residual / abs(float(ev[0])),
                                    "seconds": time.perf_counter() - t}
            print(point, name, [round(x, 5) for x in ev.tolist()], info.iterations, f"{info.max_residual:.2g}",
                  flush=True)
        if not a.reference:
            continue
        try:
            from curvlinops import HessianLinearOperator
            from scipy.sparse.linalg import eigsh

            model = copy.deepcopy(tr.model).double().eval()
            tr.spec.load(model, w64)
            t = time.perf_counter()
            op = HessianLinearOperator(model, torch.nn.CrossEntropyLoss(), list(model.parameters()),
                                       [(tr.x_train.double()[i : i + 2000], tr.y_train[i : i + 2000])
                                        for i in range(0, d.n_train, 2000)]).to_scipy()
            ref = np.sort(eigsh(op, k=5, which="LA", tol=1e-8)[0])[::-1]
            res["lanczos"]["reference (curvlinops + eigsh, tol 1e-8)"] = {"top5": ref.tolist(),
                                                                          "seconds": time.perf_counter() - t}
            print(point, "reference", [round(x, 5) for x in ref.tolist()], flush=True)
        except ImportError as e:
            print(f"no independent reference: {e}")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "noise_reference.json"
    path.write_text(json.dumps({"machine": machine(), **out}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
