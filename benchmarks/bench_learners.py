"""Step time of n simulated learners (SSGD, DPSGD) vs one model at the same total batch.

    python benchmarks/bench_learners.py [--model mlp|resnet18] [--learners 16] [--batch-size 25]

The single model is plain PyTorch: ``nn.Module`` + ``torch.optim.SGD`` on a batch of n·b.  Every variant fetches
its minibatch from the same in-memory tensors, so the ratio compares the training step alone.  Writes
``benchmarks/results/learners_<model>_<device>.json``.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F

from benchmarks.common import time_interleaved, write
from ddl.config import TrainConfig
from ddl.loop.train import Trainer


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--learners", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=25)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=50)
    args = ap.parse_args(argv)
    n, b = args.learners, args.batch_size
    dataset = "mnist5k" if args.model in ("mlp", "cnn") else "synthetic-cifar"
    common = dict(model=args.model, lr=0.05, epochs=1, progress=False, device=args.device, out="/tmp/ddl-bench")
    data = None
    if dataset == "synthetic-cifar":  # real CIFAR-10 cannot be downloaded here; speed does not depend on pixels
        from ddl.data import Dataset

        g = torch.Generator().manual_seed(0)
        N = 16 * n * b
        x_tr, y_tr = torch.randn(N, 3, 32, 32, generator=g), torch.randint(0, 10, (N,), generator=g)
        x_te, y_te = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
        data = Dataset("synthetic-cifar", x_tr, y_tr, x_te, y_te, torch.ones(N, dtype=torch.bool), y_tr.clone(), 10)
    trainers = {
        f"ssgd_n{n}": Trainer(TrainConfig(algo="ssgd", learners=n, batch_size=b, **common), data=data),
        f"dpsgd_n{n}": Trainer(TrainConfig(algo="dpsgd", learners=n, batch_size=b, **common), data=data),
    }
    single = Trainer(TrainConfig(algo="ssgd", learners=1, batch_size=n * b, **common), data=data)
    model = copy.deepcopy(single.model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    steps = {"i": 0}

    def single_step():
        i = steps["i"] = (steps["i"] + 1) % single.stream.steps_per_epoch
        idx = single.stream.indices(i, [0])[0].to(single.device)
        model.train()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(single.x_train[idx]), single.y_train[idx]).backward()
        opt.step()

    def make(tr):
        state = {"i": 0}

        def step():
            i = state["i"] = (state["i"] + 1) % tr.stream.steps_per_epoch
            xs, ys = tr.batch(i)
            tr.algo.step(tr.state, xs, ys, 0.05, 0.0)

        return step

    fns = {"single_model": single_step, **{k: make(t) for k, t in trainers.items()}}
    res = time_interleaved(fns, repeats=args.repeats, inner=args.inner)
    base = res["single_model"]["median_s"]
    ratios = {k: v["median_s"] / base for k, v in res.items() if k != "single_model"}
    dev = str(single.device).split(":")[0]
    out = write(f"learners_{args.model}_{dev}.json", {
        "what": f"{n} simulated learners (local batch {b}) vs one model at total batch {n * b}",
        "model": args.model, "dataset": dataset, "device": str(single.device), "learners": n, "local_batch": b,
        "timings": res, "ratio_to_single_model": ratios, "target": "dpsgd ratio <= 1.2",
    })
    for k, v in res.items():
        print(f"{k:>14}: {v['median_s'] * 1e3:8.3f} ms/step" + (f"  ({ratios[k]:.2f}x single)" if k in ratios else ""))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
