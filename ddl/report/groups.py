"""Runs grouped by experiment: runs whose configurations agree on every field that changes the mathematics
(:func:`ddl.config.experiment_key`) are seeds of one :class:`Group`, labelled by what sets it apart."""

from __future__ import annotations

from dataclasses import dataclass

from ddl.algorithms import ALGORITHM_FIELDS, identity_of, is_baseline, label_of
from ddl.config import TrainConfig, experiment_key
from ddl.report.runs import RunData
from ddl.report.stats import group_stats

# fields already in every label (:func:`base_label`)
LABEL_FIELDS = ("algo", "learners", "lr", *sorted(ALGORITHM_FIELDS))
# how a field that differs between groups is named in their labels (default: its name with spaces)
SHORT_NAMES = {"batch_size": "b", "momentum": "momentum", "weight_decay": "wd", "label_noise": "label noise",
               "train_per_class": "train/class", "test_per_class": "test/class", "init_scale": "init ×",
               "lr_schedule": "schedule", "eval_samples": "eval samples", "stop_loss": "stop loss"}  # fmt: skip


@dataclass
class Group:
    """Runs of one configuration (one per seed, ideally), with the label and matplotlib colour (``C0`` …) it
    is shown with."""

    key: tuple
    runs: list[RunData]
    label: str = ""
    color: str = "C0"

    @property
    def config(self) -> TrainConfig:
        return self.runs[0].config

    @property
    def algo(self) -> str:
        return self.config.algo

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    def numbers(self) -> dict[str, dict[str, float]]:
        """``{name: {"mean", "std", "n"}}`` over the seeds (see :func:`ddl.report.stats.group_stats`)."""
        return group_stats(self.runs)

    def dualities(self) -> list:
        """The duality results of the runs that have one."""
        return [r.duality for r in self.runs if r.duality is not None]

    def has_noise(self) -> bool:
        return any(r.noise for r in self.runs)


def value_str(v) -> str:
    """A config value for a label: floats short, lists joined by ``-`` (``none`` when empty)."""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "-".join(map(str, v)) if v else "none"
    return str(v)


def base_label(cfg: TrainConfig) -> str:
    """``ALGO n=… [the algorithm's own experiment fields, e.g. the topology] lr=…``."""
    s = f"{label_of(cfg.algo)} n={cfg.learners}"
    for name in identity_of(cfg.algo).experiment_fields:
        s += f" {value_str(getattr(cfg, name))}"
    return s + f" lr={cfg.lr:g}"


def make_groups(runs: list[RunData]) -> list[Group]:
    """Group runs by :func:`ddl.config.experiment_key`; the baseline algorithm first, then by learners, lr and
    label; label and colour each (the algorithm's colour when every group is a different algorithm).

    A label is :func:`base_label` plus every other experiment field whose value differs between the groups.
    """
    by_key: dict[tuple, list[RunData]] = {}
    for r in runs:
        by_key.setdefault(experiment_key(r.config), []).append(r)
    groups = [Group(k, sorted(rs, key=lambda r: r.seed)) for k, rs in by_key.items()]
    keys = [dict(g.key) for g in groups]
    names = sorted(set().union(*keys)) if keys else []
    varying = [n for n in names if n not in LABEL_FIELDS and len({k.get(n) for k in keys}) > 1]
    for g in groups:
        cfg = g.config.to_dict()
        extra = [f"{SHORT_NAMES.get(n, n.replace('_', ' '))}={value_str(cfg.get(n))}" for n in varying]
        g.label = " ".join([base_label(g.config), *extra])
    groups.sort(key=lambda g: (not is_baseline(g.algo), g.config.learners, g.config.lr, g.label))
    # one group per algorithm: each in its algorithm's colour (Identity.color); else one colour per group
    by_algorithm = len({g.algo for g in groups}) == len(groups)
    seen: dict[str, int] = {}
    for i, g in enumerate(groups):
        seen[g.label] = seen.get(g.label, 0) + 1
        if seen[g.label] > 1:
            g.label += f" #{seen[g.label]}"
        g.color = identity_of(g.algo).color if by_algorithm else f"C{i % 10}"
    return groups


def matching_baseline(group: Group, groups: list[Group]) -> Group | None:
    """The baseline algorithm's group whose configuration equals ``group``'s apart from the algorithm (and the
    fields that belong to one algorithm's experiments, such as the topology)."""

    def shared(g: Group) -> dict:
        return {k: v for k, v in g.key if k != "algo" and k not in ALGORITHM_FIELDS}

    want = shared(group)
    for g in groups:
        if is_baseline(g.algo) and shared(g) == want:
            return g
    return None


def common_settings(groups: list[Group]) -> str:
    """One line of the settings all groups share (data, model, batch, epochs …)."""
    if not groups:
        return ""
    configs = [g.config.to_dict() for g in groups]
    c = configs[0]

    def same(k):
        return all(d.get(k) == c.get(k) for d in configs)

    parts = []
    if same("dataset"):
        parts.append(str(c["dataset"]))
    if same("model") and same("hidden"):
        parts.append(f"{c['model']}" + (f" hidden {value_str(c['hidden'])}" if c["model"] == "mlp" else ""))
    if same("batch_size") and same("learners"):
        parts.append(f"b={c['batch_size']} per learner (B={c['batch_size'] * c['learners']})")
    elif same("batch_size"):
        parts.append(f"b={c['batch_size']} per learner")
    if same("momentum") and c["momentum"]:
        parts.append(f"momentum {c['momentum']:g}")
    if same("weight_decay") and c["weight_decay"]:
        parts.append(f"weight decay {c['weight_decay']:g}")
    if same("label_noise") and c["label_noise"]:
        parts.append(f"label noise {c['label_noise']:g}")
    if same("epochs"):
        parts.append(f"at most {c['epochs']} epochs")
    return ", ".join(parts)
