"""The data behind ``ddl compare``: runs read back from their directories, grouped by configuration and
aggregated over seeds.

Runs whose configurations are equal apart from the seed (and apart from execution and measurement settings
that do not change the mathematics: backend, device, workers, progress, ``--measure-noise`` …) form one
*group*; every number of a group is the mean and the seed-to-seed standard deviation (``ddof=1``) over its
runs.  Nothing here trains or analyses: a run without ``analysis/duality.*`` or ``noise.jsonl`` simply has
fewer numbers, and :attr:`RunData.missing` says how to get the rest.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ddl.config import TrainConfig, experiment_key
from ddl.rundir import Run, RunDirError, load_run

# config fields that do not change what is trained (execution, bookkeeping, measurement)
# fields already in every label
LABEL_FIELDS = ("algo", "learners", "topology", "lr")
SHORT_NAMES = {"batch_size": "b", "momentum": "momentum", "weight_decay": "wd", "label_noise": "label noise",
               "train_per_class": "train/class", "test_per_class": "test/class", "init_scale": "init ×",
               "lr_schedule": "schedule", "eval_samples": "eval samples", "stop_loss": "stop loss"}  # fmt: skip
# directions whose σ_g is compared between groups ("the sharp directions"; the reference code's split)
TOP_DIRECTIONS = 10
DUALITY_FIELDS = ("eigenvalues", "sigma_g", "sigma_w", "rho", "mean_g", "mean_w", "contributions")


# ---------------------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------------------
@dataclass
class RunData:
    """One run directory, read once: config, summary, metrics, noise and (if analysed) the duality result."""

    path: Path
    config: TrainConfig
    summary: dict
    metrics: list[dict]
    noise: list[dict]
    duality: Any | None  # DualityResult (or a namespace with its field names) or None
    missing: list[tuple[str, str]] = field(default_factory=list)  # (kind, detail): see :func:`missing_lines`
    _numbers: dict | None = field(default=None, repr=False, compare=False)

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unfinished"))

    @property
    def final(self) -> dict:
        """The last evaluation: ``summary.json``'s ``final``, else the last line of ``metrics.jsonl``."""
        f = self.summary.get("final") or {}
        return f if f else (self.metrics[-1] if self.metrics else {})

    def numbers(self) -> dict[str, float]:
        """Every scalar the report shows for this run (NaN where the data is missing); computed once."""
        if self._numbers is None:
            self._numbers = self._compute_numbers()
        return dict(self._numbers)

    def _compute_numbers(self) -> dict[str, float]:
        f = self.final
        nan = float("nan")
        out: dict[str, float] = {
            "steps": float(self.summary.get("steps", f.get("step", nan))),
            "epochs": float(self.summary.get("epochs", f.get("epoch", nan))),
            "wall_time_s": float(self.summary.get("wall_time_s", f.get("time", nan))),
            "train_loss": _num(f.get("train_loss")),
            "test_loss": _num(f.get("test_loss")),
            "train_err": 1.0 - _num(f.get("train_acc")),
            "test_err": 1.0 - _num(f.get("test_acc")),
        }
        out["loss_gap"] = out["test_loss"] - out["train_loss"]
        d = self.duality
        for k in ("true_gap", "pairwise_gap", "sharp_gap", "flat_gap", "mean_gap", "n_sharp"):
            out[k] = _num(getattr(d, k, None)) if d is not None else nan
        if d is not None and len(d.sigma_g):
            k = min(TOP_DIRECTIONS, len(d.sigma_g))
            out["sigma_g_top"] = float(np.mean(d.sigma_g[:k]))
            out["sigma_w_sum"] = float(np.sum(d.sigma_w))
            out["lambda_max"] = float(d.eigenvalues[0])
        else:
            out.update(sigma_g_top=nan, sigma_w_sum=nan, lambda_max=nan)
        rec = noise_series(self.noise)
        if rec:
            for k in ("ssgd_noise_sq", "dpsgd_noise_sq", "total_noise_sq", "sharpness"):
                out[k] = float(np.mean(rec[k]))
            if self.config.algo != "dpsgd":
                out["dpsgd_noise_sq"] = nan  # zero up to round-off: SSGD's learners all sit at w̄
            out["sharpness_final"] = float(rec["sharpness"][-1])
            main = rec["dpsgd_noise_sq"] if self.config.algo == "dpsgd" else rec["ssgd_noise_sq"]
            out["noise_sharpness_corr"] = log_corr(main, rec["sharpness"])
        else:
            out.update(ssgd_noise_sq=nan, dpsgd_noise_sq=nan, total_noise_sq=nan, sharpness=nan,
                       sharpness_final=nan, noise_sharpness_corr=nan)  # fmt: skip
        return out


def _num(v) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _read_jsonl(p: Path) -> list[dict]:
    if not p.is_file():
        return []
    out = []
    for line in p.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
    return out


def load_duality(analysis_dir: Path) -> tuple[Any | None, str | None]:
    """The duality result in ``analysis_dir`` and, if it cannot be had, one line saying why.

    Uses :meth:`analysis.result.DualityResult.load`; files of another format version fall back to a tolerant
    reader of ``duality.json`` + ``duality.npz`` that keeps whatever known fields are there.
    """
    js, npz = analysis_dir / "duality.json", analysis_dir / "duality.npz"
    if not js.is_file() or not npz.is_file():
        return None, None
    try:
        from analysis.result import DualityResult

        return DualityResult.load(js), None
    except Exception as e:  # noqa: BLE001 - any format problem: try the tolerant reader below
        first_error = f"{type(e).__name__}: {e}"
    try:
        doc = json.loads(js.read_text())
        with np.load(npz) as z:
            arrays = {k: np.asarray(z[k], dtype=np.float64) for k in z.files if k in DUALITY_FIELDS}
        if not {"sigma_g", "sigma_w", "contributions", "eigenvalues"} <= set(arrays):
            return None, f"{analysis_dir} holds an unreadable duality result ({first_error})"
        ns = SimpleNamespace(**{k: doc.get(k) for k in ("pairwise_gap", "true_gap", "sharp_gap", "flat_gap",
                                                         "mean_gap", "n_sharp", "layer", "split_rule")})  # fmt: skip
        for k in DUALITY_FIELDS:
            setattr(ns, k, arrays.get(k, np.full_like(arrays["sigma_g"], np.nan)))
        return ns, None
    except Exception as e:  # noqa: BLE001
        return None, f"{analysis_dir} holds an unreadable duality result ({type(e).__name__}: {e})"


def read_run(path: str | Path) -> RunData:
    """Read a run directory for the report.  Raises :class:`ddl.rundir.RunDirError` if it is not one."""
    p = Path(path)
    try:
        run = load_run(p)
    except RunDirError:
        if not (p / "config.json").is_file():
            raise
        # no checkpoint (unfinished or interrupted): the metrics written so far still belong in the report
        raw = json.loads((p / "config.json").read_text())
        cfg = TrainConfig.from_dict({k: v for k, v in raw.items() if k not in ("ddl_version", "world")})
        summary = json.loads((p / "summary.json").read_text()) if (p / "summary.json").is_file() else {}
        run = Run(p, cfg, summary)
    metrics, noise = _read_jsonl(p / "metrics.jsonl"), _read_jsonl(p / "noise.jsonl")
    duality, why = load_duality(p / "analysis")
    missing = []
    if not run.summary:
        missing.append(("summary", ""))
    if not metrics:
        missing.append(("metrics", ""))
    if duality is None:
        missing.append(("duality_error", why) if why else ("duality", ""))
    if not noise:
        missing.append(("noise", ""))
    return RunData(p, run.config, run.summary, metrics, noise, duality, missing)


def missing_lines(runs: list[RunData]) -> list[str]:
    """What the runs lack and how to get it, one line per kind (Markdown inline code for commands)."""
    by_kind: dict[str, list[tuple[RunData, str]]] = {}
    for r in runs:
        for kind, detail in r.missing:
            by_kind.setdefault(kind, []).append((r, detail))
    out = []

    def names(items):
        return ", ".join(str(r.path) for r, _ in items)

    if "summary" in by_kind:
        out.append(f"No summary.json (training unfinished?) in {names(by_kind['summary'])}: the last logged "
                   "evaluation stands in for the final one.")  # fmt: skip
    if "metrics" in by_kind:
        out.append(f"No metrics.jsonl in {names(by_kind['metrics'])}: no training curves for it.")
    if "duality" in by_kind:
        cmds = "; ".join(f"`ddl analyze {r.path}`" for r, _ in by_kind["duality"])
        out.append(f"No duality analysis for {names(by_kind['duality'])}, so no gap split or spectra for it: run "
                   f"{cmds}.")  # fmt: skip
    out += [detail for _, detail in by_kind.get("duality_error", [])]
    if "noise" in by_kind:
        out.append(f"No noise measurements in {names(by_kind['noise'])}: train with `--measure-noise K` "
                   "(e.g. K = 20) for the noise figures.")  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------------------------
# noise records
# ---------------------------------------------------------------------------------------------------------
def noise_series(noise: list[dict]) -> dict[str, np.ndarray]:
    """Arrays of the noise records after step 0 (where all learners are equal and η_DP = 0 by construction);
    empty if there are none."""
    recs = [r for r in noise if r.get("step", 0) > 0]
    if not recs:
        return {}
    keys = ("step", "epoch", "ssgd_noise_sq", "dpsgd_noise_sq", "total_noise_sq", "sharpness", "consensus")
    return {k: np.array([_num(r.get(k)) for r in recs]) for k in keys}


def log_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of log a and log b over the entries where both are positive and finite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if ok.sum() < 3:
        return float("nan")
    la, lb = np.log(a[ok]), np.log(b[ok])
    if la.std() == 0 or lb.std() == 0:
        return float("nan")
    return float(np.corrcoef(la, lb)[0, 1])


# ---------------------------------------------------------------------------------------------------------
# groups
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Group:
    """Runs of one configuration (one per seed, ideally)."""

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
        """``{name: {"mean", "std", "n"}}`` over the runs that have the number (``std`` NaN for one run)."""
        per = [r.numbers() for r in self.runs]
        out = {}
        for k in per[0]:
            v = np.array([p[k] for p in per], dtype=np.float64)
            v = v[np.isfinite(v)]
            out[k] = {
                "mean": float(v.mean()) if v.size else float("nan"),
                "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
                "n": int(v.size),
            }
        return out

    def dualities(self) -> list[Any]:
        return [r.duality for r in self.runs if r.duality is not None]


def _value_str(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "-".join(map(str, v)) if v else "none"
    return str(v)


def base_label(cfg: TrainConfig) -> str:
    s = f"{cfg.algo.upper()} n={cfg.learners}"
    if cfg.algo == "dpsgd":
        s += f" {cfg.topology}"
    return s + f" lr={cfg.lr:g}"


def make_groups(runs: list[RunData]) -> list[Group]:
    """Group runs by :func:`ddl.config.experiment_key`; SSGD before DPSGD, then by label; label and colour each."""
    by_key: dict[tuple, list[RunData]] = {}
    for r in runs:
        by_key.setdefault(experiment_key(r.config), []).append(r)
    groups = [Group(k, sorted(rs, key=lambda r: r.seed)) for k, rs in by_key.items()]
    # fields that differ between groups and are not in the base label go into every label
    dicts = [dict(g.key) for g in groups]
    names = sorted(set().union(*dicts)) if dicts else []
    varying = [n for n in names if n not in LABEL_FIELDS and len({d.get(n) for d in dicts}) > 1]
    for g in groups:
        cfg = g.config.to_dict()
        extra = [f"{SHORT_NAMES.get(n, n.replace('_', ' '))}={_value_str(cfg.get(n))}" for n in varying]
        g.label = " ".join([base_label(g.config), *extra])
    groups.sort(key=lambda g: (g.algo != "ssgd", g.config.learners, g.config.lr, g.label))
    seen: dict[str, int] = {}
    for i, g in enumerate(groups):
        seen[g.label] = seen.get(g.label, 0) + 1
        if seen[g.label] > 1:
            g.label += f" #{seen[g.label]}"
        g.color = f"C{i % 10}"
    return groups


def common_settings(groups: list[Group]) -> str:
    """One line of the settings all groups share (data, model, batch, epochs …)."""
    if not groups:
        return ""
    dicts = [g.config.to_dict() for g in groups]
    c = dicts[0]

    def same(k):
        return all(d.get(k) == c.get(k) for d in dicts)

    parts = []
    if same("dataset"):
        parts.append(str(c["dataset"]))
    if same("model") and same("hidden"):
        parts.append(f"{c['model']}" + (f" hidden {_value_str(c['hidden'])}" if c["model"] == "mlp" else ""))
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


# ---------------------------------------------------------------------------------------------------------
# curves and spectra aggregated over seeds
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Band:
    """x, mean and std (NaN where fewer than two runs have the point) of a quantity over a group's seeds."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    n: np.ndarray


def _band(series: list[tuple[np.ndarray, np.ndarray]], log: bool = False) -> Band:
    """Aggregate (x, y) series on the union of their x values (rounded to 1e-9)."""
    table: dict[float, list[float]] = {}
    for x, y in series:
        for xi, yi in zip(x, y):
            table.setdefault(round(float(xi), 9), []).append(float(yi))
    xs = np.array(sorted(table))
    mean, std, n = [], [], []
    for xi in xs:
        v = np.array(table[xi])
        v = v[np.isfinite(v) & (v > 0)] if log else v[np.isfinite(v)]
        if log:
            v = np.log(v)
        n.append(v.size)
        mean.append(v.mean() if v.size else np.nan)
        std.append(v.std(ddof=1) if v.size > 1 else np.nan)
    return Band(xs, np.array(mean), np.array(std), np.array(n))


def metric_band(group: Group, key: str) -> Band | None:
    """Training curve of ``key`` (``train_loss``, ``test_loss``, ``train_err``, ``test_err``) against epoch."""
    series = []
    for r in group.runs:
        if not r.metrics:
            continue
        x = np.array([_num(m.get("epoch")) for m in r.metrics])
        if key.endswith("_err"):
            y = 1.0 - np.array([_num(m.get(key.replace("_err", "_acc"))) for m in r.metrics])
        else:
            y = np.array([_num(m.get(key)) for m in r.metrics])
        series.append((x, y))
    return _band(series) if series else None


def noise_band(group: Group, key: str) -> Band | None:
    """A noise quantity against epoch, aggregated in log space (geometric mean, ×/÷ geometric std)."""
    series = []
    for r in group.runs:
        s = noise_series(r.noise)
        if s:
            series.append((s["epoch"], s[key]))
    return _band(series, log=True) if series else None


def direction_band(group: Group, key: str, cumulative: bool = False) -> Band | None:
    """A per-direction array (``sigma_g``, ``sigma_w``, ``contributions`` …) against the direction index
    k = 1, 2, … (eigenvalue order), over the seeds' common number of directions."""
    ds = group.dualities()
    if not ds:
        return None
    K = min(len(getattr(d, key)) for d in ds)
    if K == 0:
        return None
    rows = np.array([np.asarray(getattr(d, key), dtype=np.float64)[:K] for d in ds])
    if cumulative:
        rows = np.cumsum(rows, axis=1)
    x = np.arange(1, K + 1)
    return Band(x, rows.mean(0), rows.std(0, ddof=1) if len(rows) > 1 else np.full(K, np.nan),
                np.full(K, len(rows)))  # fmt: skip


# ---------------------------------------------------------------------------------------------------------
# the verdict
# ---------------------------------------------------------------------------------------------------------
def pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} %"


def pp(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.2f} pp"


def _err_str(g: Group, num: dict) -> str:
    e = num["test_err"]
    s = f"{pct(e['mean'])}"
    if e["n"] > 1:
        s += f" ± {pp(e['std'])}"
    return s + f" over {e['n']} seed{'s' if e['n'] != 1 else ''}"


def _compare_pair(a: Group, b: Group, na: dict, nb: dict) -> tuple[float, float, bool]:
    """(err_a − err_b, the larger seed-to-seed std, whether both groups have ≥ 2 seeds)."""
    ea, eb = na["test_err"], nb["test_err"]
    d = ea["mean"] - eb["mean"]
    both = ea["n"] > 1 and eb["n"] > 1
    s = max(ea["std"], eb["std"]) if both else float("nan")
    return d, s, both


def _ratio_word(r: float, lo: float = 0.9, hi: float = 1.1) -> str:
    if not math.isfinite(r):
        return "n/a"
    if r < lo:
        return "smaller"
    if r > hi:
        return "larger"
    return "about the same"


def matching_ssgd(dp: Group, groups: list[Group]) -> Group | None:
    """The SSGD group whose configuration equals ``dp``'s apart from the algorithm (and topology)."""
    want = {k: v for k, v in dp.key if k not in ("algo", "topology")}
    for g in groups:
        if g.algo == "ssgd" and {k: v for k, v in g.key if k != "algo"} == want:
            return g
    return None


def verdict(groups: list[Group]) -> list[str]:
    """Plain-language findings computed from the numbers: one paragraph per entry (Markdown: ``**bold**``,
    ```code```); entries starting with ``"- "`` are items of a list under the paragraph before them."""
    nums = {g.label: g.numbers() for g in groups}
    ok = [g for g in groups if math.isfinite(nums[g.label]["test_err"]["mean"])]
    out: list[str] = []
    if not ok:
        return ["No run has a final evaluation, so there is nothing to compare yet."]
    diverged = [r for g in groups for r in g.runs if r.status == "diverged"]
    if diverged:
        out.append(f"{len(diverged)} of {sum(len(g.runs) for g in groups)} runs diverged ("
                   + ", ".join(f"{r.path.name}" for r in diverged)
                   + f"); {'its' if len(diverged) == 1 else 'their'} last evaluation is included in the "
                   "averages.")  # fmt: skip
    if not {"ssgd", "dpsgd"} <= {g.algo for g in groups}:
        out.append("The runs are all " + groups[0].algo.upper() + ", so there is no SSGD-vs-DPSGD comparison here.")
    ranked = sorted(ok, key=lambda g: nums[g.label]["test_err"]["mean"])
    best = ranked[0]
    if len(ranked) == 1:
        out.append(f"Only one configuration: **{best.label}**, final test error {_err_str(best, nums[best.label])}.")
    else:
        second = ranked[1]
        d, s, both = _compare_pair(second, best, nums[second.label], nums[best.label])
        msg = (f"Lowest final test error: **{best.label}** with {_err_str(best, nums[best.label])}; next is "
               f"{second.label} with {_err_str(second, nums[second.label])} (difference {pp(d)}). ")  # fmt: skip
        if not both:
            msg += ("With a single seed in at least one of them the seed-to-seed spread is unknown, so this ranking "
                    "is not established; train more seeds (`--seed`).")  # fmt: skip
        elif d > s:
            msg += f"The difference exceeds the seed-to-seed standard deviation ({pp(s)})."
        else:
            msg += (f"The difference is within the seed-to-seed standard deviation ({pp(s)}): the two are not "
                    "distinguishable with these seeds.")  # fmt: skip
        out.append(msg)

    for dp in [g for g in groups if g.algo == "dpsgd"]:
        ss = matching_ssgd(dp, groups)
        same_cfg = ss is not None
        if ss is None:
            ssgd = [g for g in ok if g.algo == "ssgd"]
            if not ssgd:
                continue
            ss = min(ssgd, key=lambda g: nums[g.label]["test_err"]["mean"])
        na, nd = nums[ss.label], nums[dp.label]
        if not (math.isfinite(na["test_err"]["mean"]) and math.isfinite(nd["test_err"]["mean"])):
            continue
        d, s, both = _compare_pair(ss, dp, na, nd)  # > 0: DPSGD lower
        head = f"**{dp.label} vs {ss.label}**" + ("" if same_cfg else " (the configurations differ beyond the "
                                                                       "algorithm)")  # fmt: skip
        if d > 0 and both and d > s:
            msg = (f"{head}: DPSGD beats SSGD, test error {pct(nd['test_err']['mean'])} vs "
                   f"{pct(na['test_err']['mean'])}, lower by {pp(d)}, more than the seed-to-seed standard "
                   f"deviation ({pp(s)}).")  # fmt: skip
        elif d > 0:
            why = f"within the seed-to-seed standard deviation ({pp(s)})" if both else "with a single seed"
            msg = (f"{head}: DPSGD's test error is lower by {pp(d)} ({pct(nd['test_err']['mean'])} vs "
                   f"{pct(na['test_err']['mean'])}), but {why}: on this evidence DPSGD does not clearly beat "
                   "SSGD.")  # fmt: skip
        else:
            msg = (f"{head}: DPSGD does not beat SSGD here: its test error is {pct(nd['test_err']['mean'])} vs "
                   f"SSGD's {pct(na['test_err']['mean'])} ({pp(-d)} {'higher' if d < 0 else 'equal'}).")  # fmt: skip
        facts = []
        if math.isfinite(na["sharp_gap"]["mean"]) and math.isfinite(nd["sharp_gap"]["mean"]):
            sharp_word = "smaller" if nd["sharp_gap"]["mean"] < na["sharp_gap"]["mean"] else "not smaller"
            facts.append(f"Gap (DPSGD vs SSGD): A-W pairwise {nd['pairwise_gap']['mean']:.4g} vs "
                         f"{na['pairwise_gap']['mean']:.4g}, true {nd['true_gap']['mean']:.4g} vs "
                         f"{na['true_gap']['mean']:.4g}; sharp part {nd['sharp_gap']['mean']:.4g} vs "
                         f"{na['sharp_gap']['mean']:.4g} ({sharp_word} for DPSGD), flat part "
                         f"{nd['flat_gap']['mean']:.4g} vs {na['flat_gap']['mean']:.4g}.")  # fmt: skip
            rg = nd["sigma_g_top"]["mean"] / na["sigma_g_top"]["mean"]
            rw = nd["sigma_w_sum"]["mean"] / na["sigma_w_sum"]["mean"]
            flat = "flatter" if rg < 0.9 else ("sharper" if rg > 1.1 else "about as sharp")
            facts.append(f"Sharpness: DPSGD's mean σ_g over the {TOP_DIRECTIONS} sharpest directions is {rg:.2f}× "
                         f"SSGD's ({flat}). Size: its Σ_k σ_w,k is {rw:.2f}× SSGD's ({_ratio_word(rw)}).")  # fmt: skip
            if rg < 0.9 and 0.9 <= rw <= 1.1:
                facts.append("This is the paper's picture: flatter in the sharp directions at the same size.")
            else:
                facts.append("This is not the paper's picture of “flatter in the sharp directions at the same size” "
                             "(thresholds: σ_g ratio < 0.9, size ratio within 0.9–1.1).")  # fmt: skip
        else:
            facts.append("Not both groups have a duality analysis, so the gap's sharp/flat split cannot be compared "
                         "(`ddl analyze RUN`).")  # fmt: skip
        if math.isfinite(na["ssgd_noise_sq"]["mean"]) and math.isfinite(nd["total_noise_sq"]["mean"]):
            r = nd["total_noise_sq"]["mean"] / na["ssgd_noise_sq"]["mean"]
            rx = nd["dpsgd_noise_sq"]["mean"] / nd["ssgd_noise_sq"]["mean"]
            facts.append(f"Noise: averaged over training, DPSGD's total noise ‖ξ+η_DP‖² is {r:.2f}× SSGD's ‖ξ‖²; "
                         f"its extra noise ‖η_DP‖² is {rx:.2f}× its own minibatch noise.")  # fmt: skip
            c = nd["noise_sharpness_corr"]["mean"]
            if math.isfinite(c):
                facts.append(f"Noise vs sharpness: log ‖η_DP‖² and log λ_max correlate with r = {c:.2f} over training"
                             + (" (the extra noise is larger where the landscape is sharper)." if c > 0.5 else "."))
        else:
            facts.append("Not both groups have noise measurements, so their noise cannot be compared "
                         "(`--measure-noise K`).")  # fmt: skip
        out.append(msg)
        out += [f"- {f}" for f in facts]
    return out
