"""The training configuration: one dataclass, resolved from defaults, a config file and CLI flags.

The resolved config is written to ``RUN/config.json``; it is all that is needed to rebuild the data split,
the model and the learners' minibatch streams.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALGOS = ("ssgd", "dpsgd")
TOPOLOGIES = ("ring", "complete")
BACKENDS = ("sim", "torchrun", "ray")
SCHEDULES = ("constant", "step")
DTYPES = ("float32", "float64")


class ConfigError(ValueError):
    """Bad configuration: one line naming the flag and the accepted values."""


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


def _fl(default, help: str, **kw):
    return field(default_factory=lambda: list(default), metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    # algorithm
    algo: str = _f("ssgd", "multi-learner algorithm", choices=ALGOS)
    learners: int = _f(1, "number of learners n (n=1 is plain SGD)")
    batch_size: int = _f(25, "local minibatch b per learner (total B = n·b)")
    lr: float = _f(0.1, "learning rate α")
    topology: str = _f("ring", "DPSGD neighbour set (mixing matrix)", choices=TOPOLOGIES)
    momentum: float = _f(0.0, "heavy-ball momentum (per-learner buffers)")
    weight_decay: float = _f(0.0, "L2 weight decay β (gradient += β·w)")
    wd_stop_epoch: int | None = _f(None, "stop applying weight decay from this epoch on")
    lr_schedule: str = _f("constant", "learning-rate schedule", choices=SCHEDULES)
    lr_milestones: list[int] = _fl([], "epochs at which a step schedule multiplies lr by --lr-gamma")
    lr_gamma: float = _f(0.1, "decay factor of the step schedule")
    warmup_epochs: float = _f(0.0, "linear learning-rate warm-up length in epochs")
    # stopping and evaluation
    epochs: int = _f(100, "maximum number of epochs")
    stop_loss: float | None = _f(1e-3, "stop once training loss < this and training accuracy ≥ --stop-acc")
    stop_acc: float = _f(0.99, "training accuracy required by the loss stop rule")
    eval_every: int = _f(1, "evaluate the averaged model every this many epochs")
    eval_samples: int | None = _f(None, "evaluate on at most this many train/test samples (default: all)")
    measure_noise: int = _f(0, "measure SSGD/DPSGD noise and sharpness at w̄ every K steps (0: off)")
    noise_samples: int = _f(1000, "training samples for the full gradient and Hessian of the noise measurement")
    noise_top_k: int = _f(5, "top Hessian eigen-directions tracked by the noise measurement")
    # model
    model: str = _f("mlp", "model", choices=("mlp", "cnn", "resnet18", "densenet121"))
    hidden: list[int] = _fl([30, 30], "MLP hidden widths")
    bias: bool = _f(False, "MLP layers with bias")
    dropout: float = _f(0.0, "MLP dropout after hidden layer 1")
    init: str = _f("default", "weight init", choices=("default", "xavier"))
    init_scale: float = _f(1.0, "multiply initial weights by s")
    # data
    dataset: str = _f("mnist5k", "data set", choices=("mnist5k", "mnist", "fashion-mnist", "cifar10"))
    data_dir: str | None = _f(None, "directory holding the data set's files (mnist, cifar10, fashion-mnist)")
    train_per_class: int | None = _f(None, "correctly labelled training samples per class (mnist5k: 400)")
    test_per_class: int | None = _f(None, "test samples per class (mnist5k: 100; others: all)")
    label_noise: float = _f(0.0, "fraction ρ of training labels set to a wrong class")
    augment: bool = _f(False, "CIFAR random crop + horizontal flip")
    # execution
    backend: str = _f("sim", "where learners run", choices=BACKENDS)
    dist_backend: str = _f("auto", "torch.distributed backend (torchrun; ray with --ray-transport torch): "
                           "auto = nccl when GPUs are used, else gloo", choices=("auto", "gloo", "nccl"))
    workers: int | None = _f(None, "worker processes K, each holding n/K learners (ray: actors, default one per "
                             "learner up to the cluster's CPUs; torchrun: must equal the launched world size)")
    address: str | None = _f(None, "ray: address of an existing cluster, HOST:PORT, ray://HOST:PORT or auto "
                             "(default: start a local cluster)")
    ray_transport: str = _f("torch", "ray: how actors move tensors: torch (torch.distributed in the actors) or "
                            "objects (Ray object store)", choices=("torch", "objects"))
    sim_mode: str = _f(
        "auto", "learner gradients: auto (fastest available), vmap, or loop (oracle)", choices=("auto", "vmap", "loop")
    )
    device: str = _f("auto", "cpu, cuda, cuda:K or auto")
    dtype: str = _f("float32", "parameter dtype", choices=DTYPES)
    seed: int = _f(0, "seed of the initial weights, data split and minibatch streams")
    out: str | None = _f(None, "run directory (default: runs/<algo>-n<learners>-s<seed>)")
    overwrite: bool = _f(False, "replace an existing run in --out")
    progress: bool = _f(True, "show a progress bar")

    def validate(self) -> TrainConfig:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"--{f.name.replace('_', '-')}: {getattr(self, f.name)!r} is not one of {', '.join(choices)}"
                )
        for name in ("learners", "batch_size", "epochs", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')}: must be ≥ 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr: must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum: must be in [0, 1), got {self.momentum}")
        return self

    @property
    def total_batch(self) -> int:
        return self.learners * self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k.replace("-", "_"): v for k, v in d.items()}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"--config: unknown keys {', '.join(unknown)}")
        return cls(**d)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Keys of a JSON, YAML or TOML file (flag names, with - or _)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config: no such file {p}")
    text = p.read_text()
    if p.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    elif p.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"--config: {p} must hold a mapping of flag names to values")
    return data
