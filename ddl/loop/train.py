"""The training loop, run by every worker of every backend (one worker for simulated learners).

Per step: each of this worker's learners draws its minibatch from the shared stream, the algorithm updates
them (talking to other workers only through the :class:`~ddl.comm.Collective`).  Every ``eval_every``
epochs the averaged model w̄ is evaluated on the train and test sets and the consensus distance
mean_a ‖w_a − w̄‖² is logged.  Only the main worker writes the run directory.

Every ``checkpoint_every`` epochs, at step 0 and at the end, the complete state is checkpointed
(:mod:`ddl.rundir.checkpoint`); with ``cfg.resume`` the trainer continues from the newest valid checkpoint, and the
continued trajectory is bit-identical to an uninterrupted one on the same backend, layout and device.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ddl import __version__
from ddl.algorithms import LearnerState, algorithm_class, build_algorithm
from ddl.algorithms.asynchrony import EventSchedule
from ddl.algorithms.schedule import learning_rate, weight_decay
from ddl.algorithms.topology import make_topology
from ddl.comm import Collective, SimCollective
from ddl.compute.batchnorm import Recalibration, has_batchnorm
from ddl.compute.flat import FlatSpec
from ddl.compute.learners import LearnerGradients, evaluate
from ddl.compute.stream import MinibatchStream, ShardStream
from ddl.config import TrainConfig, resume_conflict
from ddl.data import Dataset, augment_cifar, load_dataset, stratified_subset
from ddl.data.partition import dirichlet_shards, partition_record
from ddl.errors import ConfigError, RunDirError
from ddl.loop.progress import progress_bar
from ddl.measure.clock import ComputeModel, Network, RunClock, model_message_bytes
from ddl.models import build_model
from ddl.rundir.directory import RunDirectory


@dataclass
class TrainResult:
    status: str  # "converged" | "max_epochs" | "diverged"
    steps: int
    final: dict = field(default_factory=dict)
    out: Path | None = None
    diverged_step: int | None = None
    diverged_learner: int | None = None  # the learner whose minibatch loss was first non-finite
    diverged_loss: float | None = None  # that loss (NaN or ±inf); None when only the averaged model diverged


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device: {name} requested but no CUDA device is available")
    return torch.device(name)


def _subset(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    return (x, y) if idx is None else (x[idx], y[idx])


def default_out(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.algo}-n{cfg.learners}-b{cfg.batch_size}-s{cfg.seed}"


# per worker, between evaluations: first non-finite step (−1: none), its learner, its loss, loss sum, loss count


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
        # --eval-samples: stratified, seeded subsets (the test one is the same for every run, so runs compare)
        k = cfg.eval_samples
        self.eval_train, self.eval_test = None, None
        if k is not None:
            self.eval_train = stratified_subset(d.y_train, k, cfg.seed, "eval-train", cfg.stratify).to(self.device)
            self.eval_test = stratified_subset(d.y_test, k, 0, "eval-test", cfg.stratify).to(self.device)
        self.model = build_model(
            cfg.model, d.input_shape, d.num_classes, hidden=tuple(cfg.hidden), bias=cfg.bias,
            dropout=cfg.dropout, init=cfg.init, init_scale=cfg.init_scale, seed=cfg.seed, width=cfg.width,
        ).to(self.device, self.dtype)
        self.spec = FlatSpec.of(self.model)
        bn_x = (self.x_train[stratified_subset(d.y_train, cfg.bn_samples, cfg.seed, "bn-recalibrate").to(self.device)]
                if cfg.bn_recalibrate == "on" and has_batchnorm(self.model) else None)  # --bn-recalibrate's sample
        self.recalibrated = Recalibration(self.model, bn_x, cfg.batch_size)
        self.partition: dict | None = None  # per-learner shards (non-IID data): written to partition.json
        if cfg.partition == "dirichlet":
            shards = dirichlet_shards(d.y_train, cfg.learners, cfg.dirichlet_alpha, cfg.seed, min_size=cfg.batch_size)
            self.stream = ShardStream(shards, cfg.batch_size, cfg.seed)
            self.partition = partition_record(d.y_train, shards, cfg.dirichlet_alpha, cfg.batch_size, d.num_classes)
        else:
            self.stream = MinibatchStream(d.n_train, cfg.learners, cfg.batch_size, cfg.seed)
        self.gradients = LearnerGradients(self.model, self.spec, cfg.sim_mode, cfg.amp)
        topology = make_topology(cfg.topology, cfg.learners)
        self.algo = build_algorithm(cfg.algo, self.gradients, self.comm, cfg.momentum, topology,
                                    cfg.weight_decay_kind, cfg, self._asynchronous(cfg))
        self._message_bytes = self.algo.message_bytes(self.spec.numel, torch.finfo(self.dtype).bits // 8)
        # the graph as run; None when the algorithm mixes no neighbours (SSGD averages everything every step)
        self.topology = topology if self.algo.communication_for(cfg).uses_topology else None
        # the simulated wall clock depends on config + seed only (and, without --compute-ms, this worker's timing)
        self.clock = RunClock(cfg, self.spec.numel, topology, self.comm.m) \
            if self.comm.is_main and RunClock.applies(cfg) else None
        m = self.comm.m
        w0 = self.spec.flatten(self.model)  # every learner starts from the same initial weights
        bufs = self.spec.buffers(self.model)
        self.state = LearnerState(
            W=w0.unsqueeze(0).repeat(m, 1),
            buffers={k: v.unsqueeze(0).repeat(m, *([1] * v.dim())) for k, v in bufs.items()},
        )
        self.out = Path(cfg.out) if cfg.out else default_out(cfg)
        self.files = RunDirectory(self.out)  # the run directory: every file the run reads or writes
        self.noise = None
        if cfg.measure_noise:
            from ddl.measure.noise import NoiseMeter

            if not self.algo.mean_follows_own_gradients:
                raise ConfigError(f"--measure-noise: the noise meter's extra noise is not defined for {cfg.algo} "
                                  "(its average weight does not move by its learners' current gradients)")

            # the full training set (labels as trained: what the minibatches are drawn from), or with
            # --noise-samples a seeded, stratified sample of it; its own generator, never the training streams
            ref = stratified_subset(d.y_train, cfg.noise_samples, cfg.seed, "noise", cfg.stratify)
            exact = ref.numel() == d.n_train
            self.noise = NoiseMeter(
                self.gradients.eval_loss, self.comm, self.x_train if exact else self.x_train[ref.to(self.device)],
                self.y_train if exact else self.y_train[ref.to(self.device)], exact=exact, top_k=cfg.noise_top_k,
                tol=cfg.noise_lanczos_tol, max_iter=cfg.noise_lanczos_max_iter, seed=cfg.seed,
                steps_per_epoch=self.stream.steps_per_epoch,
            )
        self._resumed: dict | None = self._load_checkpoint() if cfg.resume else None

    def _asynchronous(self, cfg: TrainConfig) -> dict | None:
        """What an asynchronous algorithm needs (ignored by the others): its event schedule, drawn from the
        clock's compute model and seed (the clock prices the same events), and each computation's minibatch."""
        if algorithm_class(cfg.algo).communication_for(cfg).synchronous:
            return None
        compute = ComputeModel(cfg.compute_ms * 1e-3, cfg.jitter, cfg.straggler_prob, cfg.straggler_slowdown)
        msg = Network.from_units(cfg.latency_us, cfg.bandwidth_gbps).message_s(
            model_message_bytes(self.spec.numel, cfg.dtype) * algorithm_class(cfg.algo).communication_for(cfg)
            .message_fraction)
        events = EventSchedule(cfg.learners, compute.sampler(cfg.learners, cfg.seed).draw, msg)

        def minibatch(k: int, learner: int) -> tuple[torch.Tensor, torch.Tensor]:
            idx = self.stream.indices(k, [learner])[0].to(self.device)
            x = self.x_train[idx]
            if cfg.augment:
                x = augment_cifar(x, self.stream.generator(k, learner))
            return x, self.y_train[idx]

        return {"events": events, "minibatch": minibatch, "seed": cfg.seed}

    def _with_points(self, w_bar, bufs_bar, xs, ys) -> tuple:
        """The noise meter's arguments: the weights and minibatches where the algorithm takes the gradients
        the next step applies (:meth:`~ddl.algorithms.Algorithm.gradient_points`), w̄ and its buffers."""
        W, xs, ys = self.algo.gradient_points(self.state, xs, ys)
        return W, w_bar, bufs_bar, xs, ys

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
        """w̄ as a model: its BatchNorm statistics recalibrated (``--bn-recalibrate on``) or the averaged ones."""
        w_bar, bufs = self.averaged()
        return self.recalibrated(self.spec.load(self.model, w_bar, bufs))

    def _eval_record(self, model: torch.nn.Module, suffix: str = "") -> dict:
        tr = evaluate(model, *_subset(self.x_train, self.y_train, self.eval_train))
        te = evaluate(model, *_subset(self.x_test, self.y_test, self.eval_test))
        return {f"train_loss{suffix}": tr[0], f"train_acc{suffix}": tr[1], f"test_loss{suffix}": te[0],
                f"test_acc{suffix}": te[1]}

    def evaluate(self) -> dict:
        """Train/test loss and accuracy of w̄ and the consensus distance; with BatchNorm recalibration also the
        numbers with the learners' averaged statistics (``*_avg_bn``), so the two can be compared."""
        w_bar, bufs = self.averaged()
        cons = self.consensus_distance(w_bar)
        if not self.comm.is_main:
            return {}
        model = self.spec.load(self.model, w_bar, bufs)
        averaged_bn = self._eval_record(model, "_avg_bn") if self.recalibrated.active else {}
        rec = {**self._eval_record(self.recalibrated(model)), "consensus": cons, **averaged_bn}
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
        ck = self._resumed
        loss_acc = torch.zeros((), dtype=torch.float64)
        if ck is None:
            torch.manual_seed(cfg.seed * 1000 + comm.rank)  # dropout draws (reproducible per backend layout)
            if main:
                self._prepare_out()
            first_bad, bad_learner, bad_loss, n_acc, elapsed, last = math.inf, -1, math.nan, 0, 0.0, {}
        else:
            first_bad, bad_learner, bad_loss, loss_sum, n_acc = self._restore_loop(ck)
            loss_acc += loss_sum
            elapsed, last = float(ck["elapsed"]), (self._reopen_out(ck) if main else {})
        if main and cfg.tensorboard:
            self.files.open_tensorboard()
        t0 = time.perf_counter() - elapsed
        status = "max_epochs"
        algo_s, steps_timed = 0.0, 0  # this worker's time in algorithm steps (the clock's measured base)
        step = self.state.step
        bar = progress_bar(total, desc=f"{cfg.algo} n={cfg.learners}", unit="step",
                           disable=not (main and cfg.progress), initial=step)
        if ck is None:
            self._checkpoint(first_bad, bad_learner, bad_loss, loss_acc, n_acc, t0)
        ended = ck.get("result") if ck is not None else None
        if ended and (ended["status"] == "diverged" or (ended["status"] == "converged" and self._same_stop(ck))):
            # killed after the final checkpoint of a run its stop rule had ended, before summary.json: finish it
            status, total = ended["status"], step
        while step < total:
            lr = learning_rate(cfg, step, steps_per_epoch)
            xs, ys = self.batch(step)
            if self.noise is not None and step % cfg.measure_noise == 0:
                w_bar, bufs_bar = self.averaged()
                rec = self.noise.measure(step, *self._with_points(w_bar, bufs_bar, xs, ys))
                if main:
                    self.files.append_noise(rec)
            t_step = time.perf_counter()
            losses = self.algo.step(self.state, xs, ys, lr, weight_decay(cfg, step, steps_per_epoch))
            step = self.state.step
            if first_bad == math.inf and not bool(torch.isfinite(losses).all()):
                first_bad = step - 1
                i = int(torch.nonzero(~torch.isfinite(losses.detach()))[0, 0])
                bad_learner, bad_loss = comm.learners[i], float(losses[i])
            algo_s += time.perf_counter() - t_step
            steps_timed += 1
            loss_acc += losses.detach().double().sum().cpu()
            n_acc += losses.numel()
            bar.update(1)
            if step % (cfg.eval_every * steps_per_epoch) == 0 or step == total:
                # every worker's first non-finite step, learner and loss in its own slots, gathered with the one
                # reduction we have (each slot is written by one worker, so a NaN loss stays in its slot)
                slots = torch.zeros(3 * comm.world + 1, dtype=torch.float64, device=losses.device)
                if math.isfinite(first_bad):
                    slots[3 * comm.rank : 3 * comm.rank + 3] = torch.tensor([first_bad, bad_learner, bad_loss])
                else:
                    slots[3 * comm.rank] = -1.0
                slots[-1] = loss_acc.item()
                slots = comm.allreduce_sum(slots)
                seen = [tuple(slots[3 * r : 3 * r + 3].tolist()) for r in range(comm.world) if slots[3 * r] >= 0]
                first_bad, bad_learner, bad_loss = min(seen, key=lambda s: (s[0], s[1])) if seen else \
                    (math.inf, -1, math.nan)
                mb = float(slots[-1]) / (n_acc * comm.world)
                loss_acc.zero_()
                n_acc = 0
                rec = self.evaluate()
                stop = torch.zeros(1, dtype=torch.float64, device=losses.device)
                if main:
                    rec = {"step": step, "epoch": step / steps_per_epoch, "lr": lr, "minibatch_loss": mb, **rec,
                           **self.algo.metrics(), "time": time.perf_counter() - t0}
                    if self.clock is not None:
                        rec["sim_time_s"] = self.clock.at(step, algo_s, steps_timed)
                    if self._message_bytes is not None:  # what one learner sends one neighbour per exchange
                        rec["message_bytes"] = self._message_bytes
                    last = rec
                    self.files.append_metrics(rec)
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
            if cfg.checkpoint_every and step % (cfg.checkpoint_every * steps_per_epoch) == 0 and step < total:
                self._checkpoint(first_bad, bad_learner, bad_loss, loss_acc, n_acc, t0)
        bar.close()
        result = TrainResult(status, step, last, self.out)
        if status == "diverged":
            result.diverged_step = int(first_bad) if math.isfinite(first_bad) else step
            if math.isfinite(first_bad):
                result.diverged_learner, result.diverged_loss = int(bad_learner), float(bad_loss)
            elif ended:
                result.diverged_step = ended["diverged_step"]
        self._checkpoint(first_bad, bad_learner, bad_loss, loss_acc, n_acc, t0, result)
        self._finish(result, time.perf_counter() - t0)
        return result

    # ---- checkpoints and resume --------------------------------------------------------------------
    def _checkpoint(self, first_bad: float, bad_learner: int, bad_loss: float, loss_acc: torch.Tensor, n_acc: int,
                    t0: float, result: TrainResult | None = None) -> None:
        """Write the complete state at the current step (every worker calls this; the main worker writes);
        ``result`` for the final checkpoint (how the run ended)."""
        comm = self.comm
        W_all = comm.gather_rows(self.state.W)
        B_all = {k: comm.gather_rows(v) for k, v in self.state.buffers.items()}
        M_all = comm.gather_rows(self.state.momentum) if self.state.momentum is not None else None
        R_all = {k: comm.gather_rows(v) for k, v in sorted(self.state.rows.items())}
        rng_cpu = comm.gather_rows(torch.get_rng_state().unsqueeze(0))
        rng_cuda = None
        if self.device.type == "cuda":
            rng_cuda = comm.gather_rows(torch.cuda.get_rng_state(self.device).unsqueeze(0))
        loop = torch.tensor([[first_bad if math.isfinite(first_bad) else -1.0, bad_learner, bad_loss,
                              float(loss_acc), n_acc]], dtype=torch.float64)
        loop = comm.gather_rows(loop)
        if not comm.is_main:
            return
        files = self.files.log_sizes()
        extra = {}
        if self.noise is not None and self.noise.warm_start is not None:
            extra["noise_v0"] = self.noise.warm_start.detach().cpu()
        if self.clock is not None and self.clock.base_s is not None:
            extra["clock_base_s"] = self.clock.base_s  # a measured base must survive a restart
        state = {
            "format": 1, "step": self.state.step, "config": self.cfg.to_dict(), "world": comm.world,
            "weights": W_all.cpu(), "buffers": {k: v.cpu() for k, v in B_all.items()},
            "momentum": None if M_all is None else M_all.cpu(),
            "algorithm_rows": {k: v.cpu() for k, v in R_all.items()},
            "rng_cpu": rng_cpu.cpu(), "rng_cuda": None if rng_cuda is None else rng_cuda.cpu(),
            "loop": loop.cpu(), "elapsed": time.perf_counter() - t0, "files": files, "extra": extra,
            "result": None if result is None else {"status": result.status, "diverged_step": result.diverged_step},
        }  # fmt: skip
        self.files.write_checkpoint(self.state.step, state)

    def _load_checkpoint(self) -> dict:
        """The newest valid checkpoint of the run in ``--out``, checked against this configuration; this
        worker's learners' rows are loaded into ``self.state``.  Nothing is written."""
        cfg, comm, out = self.cfg, self.comm, self.out
        why = resume_conflict(self.files.saved_config(), cfg)
        if why:
            raise ConfigError(why)
        path, ck = self.files.latest_checkpoint(verbose=comm.is_main)
        try:
            ck_cfg = TrainConfig.from_dict(ck["config"])
        except (ConfigError, TypeError):
            ck_cfg = None
        if ck_cfg is None or resume_conflict(ck_cfg, cfg):
            raise RunDirError(f"--resume: {path} was written by another configuration than {out}/config.json")
        step, spe = int(ck["step"]), self.stream.steps_per_epoch  # spe: steps per epoch
        summary = self.files.summary()
        status = summary.get("status")
        if status == "diverged":
            raise RunDirError(f"--resume: {out} diverged at step {summary.get('diverged_step')}; there is nothing "
                              "to continue (start a new run with another configuration)")
        if status and (step >= cfg.epochs * spe or (status == "converged" and self._same_stop(ck))):
            raise RunDirError(f"--resume: {out} is finished ({status} after {summary.get('steps', step)} steps); "
                              "give a larger --epochs (or another stop rule) to continue it")
        if step > cfg.epochs * spe:
            raise ConfigError(f"--epochs: {cfg.epochs} epochs end at step {cfg.epochs * spe}, before the "
                              f"checkpoint at step {step} in {out}")
        P = self.state.W.shape[1]
        if tuple(ck["weights"].shape) != (cfg.learners, P):
            raise RunDirError(f"--resume: {path} holds weights of shape {tuple(ck['weights'].shape)}, "
                              f"the model needs ({cfg.learners}, {P})")
        if int(ck["world"]) != comm.world and cfg.dropout > 0 and comm.is_main:
            print(f"ddl: warning: resuming on {comm.world} workers a run checkpointed on {ck['world']}: dropout "
                  "draws will differ from an uninterrupted run", file=sys.stderr)
        lo, hi = comm.rank * comm.m, (comm.rank + 1) * comm.m
        self.state.W = ck["weights"][lo:hi].to(self.device, self.dtype).contiguous()
        self.state.buffers = {k: v[lo:hi].to(self.device).contiguous() for k, v in ck["buffers"].items()}
        if ck["momentum"] is not None:
            self.state.momentum = ck["momentum"][lo:hi].to(self.device, self.dtype).contiguous()
        self.state.rows = {k: v[lo:hi].to(self.device, self.dtype).contiguous()
                           for k, v in ck.get("algorithm_rows", {}).items()}
        self.state.step = step
        if self.clock is not None:
            self.clock.restore(ck["extra"].get("clock_base_s"))
        if self.noise is not None and "noise_v0" in ck["extra"]:
            self.noise.warm_start = ck["extra"]["noise_v0"].to(self.device)
        if comm.is_main:
            print(f"ddl: resuming {out} from {path.name} (step {step}, epoch {step / spe:g})", file=sys.stderr)
        return ck

    def _same_stop(self, ck: dict) -> bool:
        """Whether the loss stop rule is the one the checkpointed run had."""
        return all(ck["config"][k] == getattr(self.cfg, k) for k in ("stop_loss", "stop_acc"))

    def _restore_loop(self, ck: dict) -> tuple[float, int, float, float, int]:
        """Set this worker's RNG and return its loop state (first non-finite step, learner, loss, loss sum,
        loss count) from checkpoint ``ck``."""
        comm, loop, K = self.comm, ck["loop"], int(ck["world"])
        if K == comm.world:
            # a private copy: torch's set_rng_state reads a row view of the stacked states wrongly (segfault)
            torch.set_rng_state(ck["rng_cpu"][comm.rank].clone())
            if self.device.type == "cuda" and ck["rng_cuda"] is not None:
                torch.cuda.set_rng_state(ck["rng_cuda"][comm.rank].clone(), self.device)
            bad, learner, loss, loss_sum, n = loop[comm.rank].tolist()
            return (bad if bad >= 0 else math.inf), int(learner), loss, loss_sum, int(n)
        # another worker layout: the random streams cannot be split per worker (documented in guarantees.md);
        # the loss log's running sum is spread evenly, the first non-finite step is kept
        from ddl.compute.stream import _mix

        torch.manual_seed(_mix(self.cfg.seed, ck["step"], comm.rank))
        seen = [row for row in loop.tolist() if row[0] >= 0]
        bad, learner, loss = min(seen, key=lambda s: (s[0], s[1]))[:3] if seen else (math.inf, -1, math.nan)
        total_sum, total_n = float(loop[:, 3].sum()), int(loop[:, 4].sum())
        return bad, int(learner), loss, total_sum / comm.world, total_n // comm.world

    def _reopen_out(self, ck: dict) -> dict:
        """Cut the logs back to the checkpoint, drop the finished run's outputs and record the (possibly
        changed) configuration; the last metrics record so far."""
        last = self.files.reopen(ck["files"])
        self._write_config()
        return last

    # ---- what the run directory records ------------------------------------------------------------
    def _prepare_out(self) -> None:
        self.files.prepare(self.cfg.overwrite)
        self._write_config()
        if self.partition is not None:
            self.files.write_partition(self.partition)

    def _write_config(self) -> None:
        cfg = self.cfg.to_dict()
        cfg["out"] = str(self.out)
        world = {"backend": self.cfg.backend, "workers": self.comm.world, "device": str(self.device)}
        if os.environ.get("TORCHELASTIC_RUN_ID"):  # lets a restarted torchrun worker recognise its own run
            world["launch_id"] = os.environ["TORCHELASTIC_RUN_ID"]
        # "mixing": the graph as run (grid, period, degree, spectral gap); None for algorithms without one
        mixing = self.topology.describe() if self.topology is not None else None
        self.files.write_config({**cfg, "ddl_version": __version__, "world": world, "mixing": mixing})

    def _finish(self, result: TrainResult, wall: float) -> None:
        w_bar, bufs = self.averaged()
        W_all = self.comm.gather_rows(self.state.W)
        B_all = {k: self.comm.gather_rows(v) for k, v in self.state.buffers.items()}
        M_all = self.comm.gather_rows(self.state.momentum) if self.state.momentum is not None else None
        if not self.comm.is_main:
            return
        model = self.recalibrated(self.spec.load(self.model, w_bar, bufs))
        averaged = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        learners = {
            "weights": W_all.cpu(), "buffers": {k: v.cpu() for k, v in B_all.items()},
            "momentum": None if M_all is None else M_all.cpu(), "param_names": list(self.spec.names),
            "step": result.steps,
        }
        summary = {
            "status": result.status, "steps": result.steps, "epochs": result.steps / self.stream.steps_per_epoch,
            "diverged_step": result.diverged_step, "diverged_learner": result.diverged_learner,
            "diverged_loss": result.diverged_loss, "wall_time_s": wall, "final": result.final,
            "steps_per_epoch": self.stream.steps_per_epoch,
            "spectral_gap": self.topology.spectral_gap if self.topology is not None else None,
            "batchnorm": self.recalibrated.info(),
        }
        if self.clock is not None:
            summary["sim_time_s"] = self.clock.at(result.steps, 0.0, 0) if self.clock.clock else None
            summary["clock"] = self.clock.describe()
        self.files.write_final(averaged, learners, summary)


def train(cfg: TrainConfig, comm: Collective | None = None) -> TrainResult:
    """Train per ``cfg`` on ``comm`` (simulated learners by default) and write the run directory."""
    return Trainer(cfg, comm).run()

