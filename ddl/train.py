"""The training loop, run by every worker of every backend (one worker for simulated learners).

Per step: each of this worker's learners draws its minibatch from the shared stream, the algorithm updates
them (talking to other workers only through the :class:`~ddl.comm.Collective`).  Every ``eval_every``
epochs the averaged model w̄ is evaluated on the train and test sets and the consensus distance
mean_a ‖w_a − w̄‖² is logged.  Only the main worker writes the run directory.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ddl import __version__
from ddl.algorithms import LearnerState, build_algorithm
from ddl.comm import Collective, SimCollective
from ddl.config import TrainConfig
from ddl.data import Dataset, augment_cifar, load_dataset
from ddl.errors import ConfigError
from ddl.flat import FlatSpec
from ddl.learners import LearnerGradients, evaluate
from ddl.models import build_model
from ddl.progress import progress_bar
from ddl.rundir import append_jsonl, save_torch, write_json
from ddl.schedule import learning_rate, weight_decay
from ddl.stream import MinibatchStream
from ddl.topology import make_topology


@dataclass
class TrainResult:
    status: str  # "converged" | "max_epochs" | "diverged"
    steps: int
    final: dict = field(default_factory=dict)
    out: Path | None = None
    diverged_step: int | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device: {name} requested but no CUDA device is available")
    return torch.device(name)


def default_out(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.algo}-n{cfg.learners}-b{cfg.batch_size}-s{cfg.seed}"


class Trainer:
    """One worker's share of a run: its learners, their state, the loop and (on the main worker) the files."""

    def __init__(self, cfg: TrainConfig, comm: Collective | None = None, device: torch.device | None = None,
                 data: Dataset | None = None):
        self.cfg = cfg.validate()
        self.comm = comm or SimCollective(cfg.learners)
        if self.comm.n != cfg.learners:
            raise ConfigError(f"--learners: config has {cfg.learners} learners, the backend holds {self.comm.n}")
        self.device = device or resolve_device(cfg.device)
        self.dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
        self.data = data or load_dataset(
            cfg.dataset, cfg.data_dir, cfg.train_per_class, cfg.test_per_class, cfg.label_noise, cfg.seed
        )
        d = self.data
        self.x_train = d.x_train.to(self.device, self.dtype)
        self.y_train = d.y_train.to(self.device)
        self.x_test = d.x_test.to(self.device, self.dtype)
        self.y_test = d.y_test.to(self.device)
        self.model = build_model(
            cfg.model, d.input_shape, d.num_classes, hidden=tuple(cfg.hidden), bias=cfg.bias,
            dropout=cfg.dropout, init=cfg.init, init_scale=cfg.init_scale, seed=cfg.seed,
        ).to(self.device, self.dtype)
        self.spec = FlatSpec.of(self.model)
        self.stream = MinibatchStream(d.n_train, cfg.learners, cfg.batch_size, cfg.seed)
        self.gradients = LearnerGradients(self.model, self.spec, cfg.sim_mode, cfg.amp)
        self.algo = build_algorithm(cfg.algo, self.gradients, self.comm, cfg.momentum,
                                    make_topology(cfg.topology, cfg.learners))
        m = self.comm.m
        w0 = self.spec.flatten(self.model)  # every learner starts from the same initial weights
        bufs = self.spec.buffers(self.model)
        self.state = LearnerState(
            W=w0.unsqueeze(0).repeat(m, 1),
            buffers={k: v.unsqueeze(0).repeat(m, *([1] * v.dim())) for k, v in bufs.items()},
        )
        self.out = Path(cfg.out) if cfg.out else default_out(cfg)
        self.noise = None
        if cfg.measure_noise:
            from ddl.noise import NoiseMeter

            clean = torch.nonzero(d.clean_mask).flatten()
            # the meter's sample comes from its own generator: measuring never draws from the training streams
            g = torch.Generator().manual_seed(cfg.seed + 4242)
            pick = clean[torch.randperm(clean.numel(), generator=g)[: cfg.noise_samples]]
            self.noise = NoiseMeter(
                self.gradients.loss, self.gradients.grads, self.comm, d.x_train[pick].to(self.device, self.dtype),
                d.y_train[pick].to(self.device), top_k=cfg.noise_top_k, seed=cfg.seed,
                steps_per_epoch=self.stream.steps_per_epoch,
            )

    # ---- averaged model and evaluation -------------------------------------------------------------
    def averaged(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """w̄ and the averaged BatchNorm buffers, identical on every worker."""
        n = self.comm.n
        w_bar = self.comm.allreduce_sum(self.state.W.sum(0)) / n
        bufs = {}
        for k, v in self.state.buffers.items():
            if v.is_floating_point():
                bufs[k] = self.comm.allreduce_sum(v.sum(0)) / n
            else:
                bufs[k] = v[0].clone()
        return w_bar, bufs

    def consensus_distance(self, w_bar: torch.Tensor) -> float:
        """mean_a ‖w_a − w̄‖² over all n learners."""
        local = ((self.state.W - w_bar) ** 2).sum()
        return float(self.comm.allreduce_sum(local.reshape(1))[0] / self.comm.n)

    def averaged_model(self) -> torch.nn.Module:
        w_bar, bufs = self.averaged()
        return self.spec.load(self.model, w_bar, bufs)

    def evaluate(self) -> dict:
        w_bar, bufs = self.averaged()
        cons = self.consensus_distance(w_bar)
        if not self.comm.is_main:
            return {}
        model = self.spec.load(self.model, w_bar, bufs)
        k = self.cfg.eval_samples
        tr = evaluate(model, self.x_train[:k], self.y_train[:k])
        te = evaluate(model, self.x_test[:k], self.y_test[:k])
        rec = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0], "test_acc": te[1], "consensus": cons}
        if not bool(self.data.clean_mask.all()):
            clean = self.data.clean_mask.to(self.device)
            rec["train_loss_clean"], rec["train_acc_clean"] = evaluate(model, self.x_train[clean], self.y_train[clean])
        return rec

    # ---- the loop ----------------------------------------------------------------------------------
    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.stream.indices(step, self.comm.learners).to(self.device)
        xs, ys = self.x_train[idx], self.y_train[idx]
        if self.cfg.augment:
            xs = torch.stack([
                augment_cifar(xs[i], self.stream.generator(step, a)) for i, a in enumerate(self.comm.learners)
            ])
        return xs, ys

    def run(self) -> TrainResult:
        cfg, comm = self.cfg, self.comm
        steps_per_epoch = self.stream.steps_per_epoch
        total = cfg.epochs * steps_per_epoch
        main = comm.is_main
        torch.manual_seed(cfg.seed * 1000 + comm.rank)  # dropout draws (reproducible per backend layout)
        if main:
            self._prepare_out()
        bar = progress_bar(total, desc=f"{cfg.algo} n={cfg.learners}", unit="step",
                           disable=not (main and cfg.progress))
        t0 = time.perf_counter()
        status, first_bad, last = "max_epochs", math.inf, {}
        loss_acc = torch.zeros((), dtype=torch.float64)
        n_acc = 0
        step = self.state.step
        while step < total:
            lr = learning_rate(cfg, step, steps_per_epoch)
            xs, ys = self.batch(step)
            if self.noise is not None and step % cfg.measure_noise == 0:
                self.model.train()
                w_bar, bufs_bar = self.averaged()
                rec = self.noise.measure(step, self.state.W, self.state.buffers, w_bar, bufs_bar, xs, ys)
                if main:
                    append_jsonl(self.out / "noise.jsonl", rec)
            losses = self.algo.step(self.state, xs, ys, lr, weight_decay(cfg, step, steps_per_epoch))
            step = self.state.step
            if first_bad == math.inf and not bool(torch.isfinite(losses).all()):
                first_bad = step - 1
            loss_acc += losses.detach().double().sum().cpu()
            n_acc += losses.numel()
            bar.update(1)
            if step % (cfg.eval_every * steps_per_epoch) == 0 or step == total:
                # every worker's first non-finite step, in its own slot, gathered with the one reduction we have
                slots = torch.zeros(comm.world + 1, dtype=torch.float64, device=losses.device)
                slots[comm.rank] = first_bad if math.isfinite(first_bad) else -1.0
                slots[-1] = loss_acc.item()
                slots = comm.allreduce_sum(slots)
                seen = [v for v in slots[:-1].tolist() if v >= 0]
                first_bad = min(seen) if seen else math.inf
                mb = float(slots[-1]) / (n_acc * comm.world)
                loss_acc.zero_()
                n_acc = 0
                rec = self.evaluate()
                stop = torch.zeros(1, dtype=torch.float64, device=losses.device)
                if main:
                    rec = {"step": step, "epoch": step / steps_per_epoch, "lr": lr, "minibatch_loss": mb, **rec,
                           "time": time.perf_counter() - t0}
                    last = rec
                    append_jsonl(self.out / "metrics.jsonl", rec)
                    bar.set_postfix(loss=f"{rec['train_loss']:.3g}", test_acc=f"{rec['test_acc']:.4f}")
                    if math.isfinite(first_bad) or not math.isfinite(rec["train_loss"]):
                        status = "diverged"
                        stop += 1
                    elif cfg.stop_loss is not None and rec["train_loss"] < cfg.stop_loss \
                            and rec["train_acc"] >= cfg.stop_acc:
                        status = "converged"
                        stop += 1
                if float(comm.broadcast(stop, 0)[0]) > 0:
                    break
        bar.close()
        diverged_step = None
        if status == "diverged":
            diverged_step = int(first_bad) if math.isfinite(first_bad) else step
        result = TrainResult(status, step, last, self.out, diverged_step)
        self._finish(result, time.perf_counter() - t0)
        return result

    # ---- files -------------------------------------------------------------------------------------
    def _prepare_out(self) -> None:
        out = self.out
        if (out / "config.json").exists() and not self.cfg.overwrite:
            raise ConfigError(f"--out: {out} already holds a run (pass --overwrite to replace it)")
        out.mkdir(parents=True, exist_ok=True)
        for stale in ("metrics.jsonl", "noise.jsonl", "summary.json"):
            (out / stale).unlink(missing_ok=True)
        cfg = self.cfg.to_dict()
        cfg["out"] = str(out)
        write_json(out / "config.json", {**cfg, "ddl_version": __version__,
                                         "world": {"backend": self.cfg.backend, "workers": self.comm.world,
                                                   "device": str(self.device)}})

    def _finish(self, result: TrainResult, wall: float) -> None:
        w_bar, bufs = self.averaged()
        W_all = self.comm.gather_rows(self.state.W)
        B_all = {k: self.comm.gather_rows(v) for k, v in self.state.buffers.items()}
        M_all = self.comm.gather_rows(self.state.momentum) if self.state.momentum is not None else None
        if not self.comm.is_main:
            return
        model = self.spec.load(self.model, w_bar, bufs)
        ck = self.out / "checkpoints"
        save_torch(ck / "averaged.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})
        save_torch(ck / "learners.pt", {
            "weights": W_all.cpu(), "buffers": {k: v.cpu() for k, v in B_all.items()},
            "momentum": None if M_all is None else M_all.cpu(), "param_names": list(self.spec.names),
            "step": result.steps,
        })
        summary = {
            "status": result.status, "steps": result.steps, "epochs": result.steps / self.stream.steps_per_epoch,
            "diverged_step": result.diverged_step, "wall_time_s": wall, "final": result.final,
            "steps_per_epoch": self.stream.steps_per_epoch,
        }
        write_json(self.out / "summary.json", summary)


def train(cfg: TrainConfig, comm: Collective | None = None) -> TrainResult:
    """Train per ``cfg`` on ``comm`` (simulated learners by default) and write the run directory."""
    return Trainer(cfg, comm).run()

