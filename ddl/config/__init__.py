"""The training configuration: one dataclass, resolved from defaults, a config file and CLI flags.

The resolved config is written to ``RUN/config.json``; it is all that is needed to rebuild the data split,
the model and the learners' minibatch streams.

Every field carries a **role** (``ROLES``): ``algorithm``, ``model`` and ``data`` change the mathematics of a run
(``MATH_ROLES``); ``stopping``, ``measure`` and ``execution`` do not.  That one declaration decides which runs
are repetitions of one configuration (reports group seeds by it) and which flags may change on resume.  Sets of
allowed values live next to their implementations and are only referenced here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddl.algorithms import ALGORITHM_FIELDS, ALGORITHMS, BASELINE, algorithm_class, identity_of
from ddl.algorithms.compression import COMPRESSORS
from ddl.algorithms.schedule import SCHEDULES
from ddl.algorithms.topology import TOPOLOGIES, degenerate_request
from ddl.algorithms.weight_decay import WEIGHT_DECAY_KINDS
from ddl.comm import BACKENDS
from ddl.comm.torchdist import DIST_BACKENDS
from ddl.compute.batchnorm import BN_MODES
from ddl.compute.learners import AMP_MODES
from ddl.compute.learners import MODES as SIM_MODES
from ddl.config.fieldtypes import field_types, flag_name
from ddl.data import DATASETS
from ddl.data.partition import PARTITIONS
from ddl.data.subsets import STRATIFY_MODES
from ddl.errors import ConfigError
from ddl.models.cifar import PAPER_WIDTHS
from ddl.models.factory import INITS, MODELS, check_width

ALGOS = tuple(ALGORITHMS)
DTYPES = ("float32", "float64")
RAY_TRANSPORTS = ("torch", "objects")

ROLES = ("algorithm", "model", "data", "stopping", "measure", "replicate", "execution")
MATH_ROLES = frozenset({"algorithm", "model", "data"})  # change the mathematics of a run
EXPERIMENT_ROLES = MATH_ROLES | {"stopping"}  # runs equal in these are seeds of one experiment
RESUMABLE_ROLES = frozenset({"stopping", "execution"})  # may change when a run is resumed

__all__ = ["ALGOS", "ConfigError", "EXPERIMENT_ROLES", "MATH_ROLES", "RESUMABLE_ROLES", "ROLES", "TrainConfig",
           "experiment_key", "fields_by_role", "read_config_file", "resume_conflict"]


def _field(default, help: str, role: str, **kw):
    """A config field with its CLI help, its role and (optionally) its allowed ``choices``."""
    assert role in ROLES, role
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, "role": role, **kw})
    return field(default=default, metadata={"help": help, "role": role, **kw})


@dataclass
class TrainConfig:
    # ---- the algorithm
    algo: str = _field(BASELINE, "multi-learner algorithm", "algorithm", choices=ALGOS)
    learners: int = _field(1, "number of learners n (n=1 is plain SGD)", "algorithm")
    batch_size: int = _field(25, "local minibatch b per learner (total B = n·b)", "algorithm")
    lr: float = _field(0.1, "learning rate α", "algorithm")
    topology: str = _field("ring", "DPSGD neighbour set (mixing matrix)", "algorithm", choices=tuple(TOPOLOGIES))
    momentum: float = _field(0.0, "heavy-ball momentum (per-learner buffers)", "algorithm")
    period: int = _field(1, "local SGD / Gossip-PGA: average all learners' weights every H steps", "algorithm")
    compressor: str = _field("none", "CHOCO-SGD: message compressor (none: whole rows)", "algorithm",
                             choices=COMPRESSORS)
    compress_ratio: float = _field(1.0, "CHOCO-SGD: topk keeps this fraction of the entries; qsgd sends "
                                   "round(r·8·bytes per value) bits per entry", "algorithm")
    consensus_step: float = _field(1.0, "CHOCO-SGD: consensus step size γ", "algorithm")
    weight_decay: float = _field(0.0, "weight decay β (penalty per --weight-decay-kind)", "algorithm")
    weight_decay_kind: str = _field("l2sq", "weight decay penalty on each learner's whole weight vector: l2sq "
                                    "(β/2)‖w‖², gradient β·w (PyTorch's); l2norm β‖w‖₂, gradient β·w/‖w‖₂ (the "
                                    "authors' reference code)", "algorithm", choices=WEIGHT_DECAY_KINDS)
    wd_stop_epoch: int | None = _field(None, "stop applying weight decay from this epoch on", "algorithm")
    lr_schedule: str = _field("constant", "learning-rate schedule", "algorithm", choices=SCHEDULES)
    lr_milestones: list[int] = _field([], "epochs at which a step schedule multiplies lr by --lr-gamma", "algorithm")
    lr_gamma: float = _field(0.1, "decay factor of the step schedule", "algorithm")
    warmup_epochs: float = _field(0.0, "linear learning-rate warm-up length in epochs", "algorithm")
    # ---- stopping and evaluation
    epochs: int = _field(1000, "maximum number of epochs (the authors' cap; training normally ends earlier at the "
                         "--stop-loss rule, as theirs does)", "stopping")
    stop_loss: float | None = _field(1e-3, "stop once training loss < this and training accuracy ≥ --stop-acc",
                                     "stopping")
    stop_acc: float = _field(0.99, "training accuracy required by the loss stop rule", "stopping")
    eval_every: int = _field(1, "evaluate the averaged model every this many epochs", "stopping")
    eval_samples: int | None = _field(None, "evaluate on a seeded, class-stratified sample of at most this many "
                                      "train and test samples (default: all)", "stopping")
    bn_recalibrate: str = _field("on", "BatchNorm models: before every evaluation and before the averaged model is "
                                 "saved for analysis, recompute w̄'s BatchNorm running statistics on a seeded sample of "
                                 "training data (as torch.optim.swa_utils.update_bn); the learners' averaged "
                                 "statistics are still evaluated and logged as *_avg_bn (off: evaluate and save "
                                 "the averaged statistics only; no effect without BatchNorm)", "stopping",
                                 choices=BN_MODES)
    bn_samples: int = _field(2048, "BatchNorm recalibration: size of the seeded, class-stratified training sample "
                             "(passed in batches of --batch-size)", "stopping")
    stratify: str = _field("proportional", "how every subset (--eval-samples, --noise-samples, the analysis's "
                           "--test-samples) shares its samples between classes: in proportion to the class sizes "
                           "(estimates the data's own loss) or equal counts (a class-balanced loss)", "stopping",
                           choices=STRATIFY_MODES)
    # ---- measurements (never change the trajectory)
    measure_noise: int = _field(0, "measure SSGD/DPSGD noise and sharpness at w̄ every K steps (0: off)", "measure")
    noise_samples: int | None = _field(None, "approximate the noise measurement's full gradient and Hessian with a "
                                       "seeded, stratified sample of this many training samples (default: all, "
                                       "exact)", "measure")
    noise_top_k: int = _field(5, "top Hessian eigen-directions tracked by the noise measurement", "measure")
    noise_lanczos_tol: float = _field(1e-6, "noise measurement: Lanczos runs until every top-k residual "
                                      "‖Hv − λv‖ ≤ this × |λ1|", "measure")
    noise_lanczos_max_iter: int = _field(300, "noise measurement: Lanczos iteration cap (memory: (cap+1) weight "
                                         "vectors in float64)", "measure")
    # ---- the model
    model: str = _field("mlp", "model", "model", choices=MODELS)
    hidden: list[int] = _field([30, 30], "MLP hidden widths", "model")
    bias: bool = _field(False, "MLP layers with bias", "model")
    dropout: float = _field(0.0, "MLP dropout after hidden layer 1", "model")
    init: str = _field("default", "weight init", "model", choices=INITS)
    init_scale: float = _field(1.0, "multiply initial weights by s", "model")
    width: int | None = _field(None, "ResNet-18 base channels / DenseNet-121 growth rate (depth, blocks, BatchNorm "
                               "and final layer unchanged; default: the paper's, 64 / 32, written to config.json)",
                               "model")
    dtype: str = _field("float32", "parameter dtype", "model", choices=DTYPES)
    # a precision choice like dtype: it changes the numbers a run produces, so it is part of the experiment
    amp: str = _field("off", "mixed precision of the learners' forward/backward: off (exact --dtype) or bf16 "
                      "(torch.autocast; changes the numerics; weights and updates stay in --dtype)", "model",
                      choices=AMP_MODES)
    # ---- the data
    dataset: str = _field("mnist5k", "data set", "data", choices=DATASETS)
    train_per_class: int | None = _field(None, "correctly labelled training samples per class (mnist5k: 400)",
                                         "data")
    test_per_class: int | None = _field(None, "test samples per class (mnist5k: 100; others: all)", "data")
    label_noise: float = _field(0.0, "fraction ρ of training labels set to a wrong class", "data")
    augment: bool = _field(False, "CIFAR random crop + horizontal flip", "data")
    partition: str = _field("iid", "how learners' data differ: iid (every learner samples the whole training set) "
                            "or dirichlet (each learner samples its own shard, split per class with proportions "
                            "~ Dir(--dirichlet-alpha); docs/theory.md)", "data", choices=PARTITIONS)
    dirichlet_alpha: float = _field(1.0, "concentration α of the Dirichlet shards (small: each learner holds few "
                                    "classes; large: near-IID); used with --partition dirichlet", "data")
    # ---- the replicate: everything above fixes an experiment, the seed one repetition of it
    seed: int = _field(0, "seed of the initial weights, data split and minibatch streams", "replicate")
    # ---- execution: where and how, never what
    data_dir: str | None = _field(None, "directory holding the data set's files (mnist, cifar10, fashion-mnist)",
                                  "execution")
    backend: str = _field("sim", "where learners run", "execution", choices=BACKENDS)
    dist_backend: str = _field("auto", "torch.distributed backend (torchrun; ray with --ray-transport torch): "
                               "auto = nccl when GPUs are used, else gloo", "execution", choices=DIST_BACKENDS)
    workers: int | None = _field(None, "worker processes K, each holding n/K learners (ray: actors, default one "
                                 "per learner up to the cluster's CPUs; torchrun: must equal the launched world size)",
                                 "execution")
    address: str | None = _field(None, "ray: address of an existing cluster, HOST:PORT, ray://HOST:PORT or auto "
                                 "(default: start a local cluster)", "execution")
    ray_transport: str = _field("torch", "ray: how actors move tensors: torch (torch.distributed in the actors) or "
                                "objects (Ray object store)", "execution", choices=RAY_TRANSPORTS)
    sim_mode: str = _field("auto", "learner gradients: auto (fastest available), vmap, or loop (oracle)",
                           "execution", choices=SIM_MODES)
    device: str = _field("auto", "cpu, cuda, cuda:K or auto", "execution")
    out: str | None = _field(None, "run directory (default: runs/<algo>-n<learners>-b<batch>-s<seed>)", "execution")
    overwrite: bool = _field(False, "replace an existing run in --out", "execution")
    progress: bool = _field(True, "show a progress bar", "execution")
    # ---- checkpoints and restarts (execution: they never change the trajectory)
    checkpoint_every: int = _field(10, "write a resumable checkpoint every E epochs (0: only at the start and the "
                                   "end; the last two are kept)", "execution")
    resume: bool = _field(False, "continue the run in --out from its last valid checkpoint with its saved "
                          "configuration (only stopping and execution flags may change)", "execution")
    ray_max_restarts: int = _field(2, "ray: restart the actors up to N times after one dies, resuming from the "
                                   "last checkpoint (torchrun: use torchrun's own --max-restarts)", "execution")
    # ---- the simulated wall clock (docs/clock.md): stamps records with sim_time_s, never changes the maths
    clock: bool = _field(True, "simulate the run's wall-clock time on a cluster (sim_time_s in metrics and summary)",
                         "execution")
    compute_ms: float | None = _field(None, "clock: one learner's compute time per step in ms (default: measured "
                                      "from this run's own step time)", "execution")
    jitter: float = _field(0.1, "clock: σ of the log-normal per-step compute-time factor (mean 1)", "execution")
    straggler_prob: float = _field(0.02, "clock: probability that a learner's step is a straggler's", "execution")
    straggler_slowdown: float = _field(3.0, "clock: a straggling step takes this many times longer", "execution")
    latency_us: float = _field(50.0, "clock: link latency α in µs (default: 10 GbE through one switch)", "execution")
    bandwidth_gbps: float = _field(10.0, "clock: link bandwidth β in Gbit/s (default: 10 GbE)", "execution")
    tensorboard: bool = _field(False, "also write the metrics, noise and simulated clock as TensorBoard event files "
                               "under RUN_DIR/tensorboard (needs the tensorboard package)", "execution")
    clock_overlap: bool = _field(True, "clock: DPSGD sends its weights when a step starts, overlapping the gradient "
                                 "(--no-clock-overlap: sends after it)", "execution")
    clock_shared_nic: bool = _field(True, "clock: a learner's messages of one step share its link (degree d costs "
                                    "d transfers; --no-clock-shared-nic: one link per message)", "execution")

    def validate(self) -> TrainConfig:
        """Check every field's type, finiteness and range; the first problem is one :class:`ConfigError` line
        naming the flag."""
        for name, ft in field_types(type(self)).items():
            setattr(self, name, ft.check(getattr(self, name)))
            if ft.choices and getattr(self, name) not in ft.choices:
                raise ConfigError(f"{flag_name(name)}: {getattr(self, name)!r} is not one of {', '.join(ft.choices)}")
        for name, (lo, lo_open, hi, hi_open) in _RANGES.items():
            v = getattr(self, name, None)
            for x in (v if isinstance(v, list) else [v]):
                if x is not None:
                    _check_range(name, x, lo, lo_open, hi, hi_open)
        check_width(self.model, self.width)
        if self.width is None and self.model in PAPER_WIDTHS:  # recorded as the number it is
            self.width = PAPER_WIDTHS[self.model]
        algorithm_class(self.algo).check_config(self)  # an algorithm's own checks of its fields
        if self.amp != "off" and self.dtype != "float32":
            raise ConfigError(f"--amp: {self.amp} needs --dtype float32 (autocast leaves {self.dtype} untouched)")
        if algorithm_class(self.algo).communication.uses_topology:  # never silently another graph
            why = degenerate_request(self.topology, self.learners)
            if why is not None:
                raise ConfigError(why)
        return self

    @property
    def total_batch(self) -> int:
        return self.learners * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {str(k).replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"--config: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
        return cls(**d)


# allowed ranges of the numeric fields: name -> (low, low excluded, high, high excluded); None = unbounded.
# Lists are checked element by element; None values (optional fields left unset) are not checked.
_RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "learners": (1, False, None, False),
    "batch_size": (1, False, None, False),
    "bn_samples": (1, False, None, False),
    "lr": (0, True, None, False),
    "momentum": (0, False, 1, True),
    "period": (1, False, None, False),
    "compress_ratio": (0, True, 1, False),
    "consensus_step": (0, True, 1, False),
    "weight_decay": (0, False, None, False),
    "wd_stop_epoch": (0, False, None, False),
    "lr_milestones": (0, False, None, False),
    "lr_gamma": (0, True, None, False),
    "warmup_epochs": (0, False, None, False),
    "epochs": (1, False, None, False),
    "stop_loss": (0, False, None, False),
    "stop_acc": (0, False, 1, False),
    "eval_every": (1, False, None, False),
    "eval_samples": (1, False, None, False),
    "measure_noise": (0, False, None, False),
    "noise_samples": (1, False, None, False),
    "noise_top_k": (1, False, None, False),
    "noise_lanczos_tol": (0, True, None, False),
    "noise_lanczos_max_iter": (1, False, None, False),
    "hidden": (1, False, None, False),
    "dropout": (0, False, 1, True),
    "init_scale": (0, True, None, False),
    "width": (1, False, None, False),
    "train_per_class": (1, False, None, False),
    "test_per_class": (1, False, None, False),
    "label_noise": (0, False, 1, True),
    "dirichlet_alpha": (0, True, None, False),
    "seed": (0, False, None, False),
    "workers": (1, False, None, False),
    "checkpoint_every": (0, False, None, False),
    "ray_max_restarts": (0, False, None, False),
    "compute_ms": (0, True, None, False),
    "jitter": (0, False, None, False),
    "straggler_prob": (0, False, 1, False),
    "straggler_slowdown": (1, False, None, False),
    "latency_us": (0, False, None, False),
    "bandwidth_gbps": (0, True, None, False),
}


def _check_range(name: str, v: float, lo, lo_open: bool, hi, hi_open: bool) -> None:
    bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
    bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
    if not (bad_lo or bad_hi):
        return
    if lo is not None and hi is not None:
        rng = f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:
        rng = f"{'>' if lo_open else '≥'} {lo}"
    else:
        rng = f"{'<' if hi_open else '≤'} {hi}"
    raise ConfigError(f"{flag_name(name)}: must be {rng}, got {v}")


def resume_conflict(saved: TrainConfig, cfg: TrainConfig) -> str | None:
    """The first field outside ``RESUMABLE_ROLES`` in which ``cfg`` differs from the run's ``saved`` config, as
    one line naming its flag, or None."""
    for name in fields_by_role(*(r for r in ROLES if r not in RESUMABLE_ROLES)):
        a, b = getattr(saved, name), getattr(cfg, name)
        if a != b:
            return (f"--{name.replace('_', '-')}: cannot change when resuming (the run has {a!r}, given {b!r}); "
                    f"only {' and '.join(sorted(RESUMABLE_ROLES))} flags may change")
    return None


def fields_by_role(*roles: str) -> tuple[str, ...]:
    """Names of the config fields whose role is one of ``roles``."""
    return tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata["role"] in roles)


def experiment_key(cfg: TrainConfig) -> tuple[tuple[str, str], ...]:
    """What makes two runs repetitions (seeds) of one experiment: every field with a role in
    ``EXPERIMENT_ROLES``, less the fields that belong to other algorithms' experiments only (the topology of an
    algorithm that mixes no neighbours: ``Identity.experiment_fields``)."""
    own = set(identity_of(cfg.algo).experiment_fields)
    d = {k: getattr(cfg, k) for k in fields_by_role(*EXPERIMENT_ROLES) if k not in ALGORITHM_FIELDS or k in own}
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in d.items()))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Keys of a JSON, YAML or TOML file (flag names, with - or _)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config: no such file {p}")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--config: cannot read {p} ({type(e).__name__})") from None
    import tomllib

    import yaml

    try:
        if p.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif p.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--config: {p} is not valid {p.suffix.lstrip('.').upper() or 'JSON'}: {why}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {p} must hold a mapping of flag names to values")
    return data
