"""A simulated wall clock: what a run's steps would cost on a real cluster (it computes, it never sleeps).

The clock models one learner per device and asks the algorithm what it communicates and when
(:class:`ddl.algorithms.Communication`), never its name.  Per learner ``a`` and step ``t`` a compute time

    c_a(t) = base · exp(σ·z − σ²/2) · (s if u < p else 1),     z ~ N(0, 1), u ~ U(0, 1)

(log-normal jitter of mean one, and with probability ``p`` a straggler slowdown ``s``) is drawn from the clock's
*own* random generator, seeded from the run seed; the training streams are never touched.  A message of
``B`` bytes over a link takes ``α + B/β`` (latency α, bandwidth β); a model message is the parameter count
times the dtype's size.  ``T_a(t)`` is the time learner ``a`` starts step ``t`` (``T_a(0) = 0``).

* **Gradient all-reduce** (SSGD: ``gradient_allreduce``, after the backward pass): a step ends for everyone when
  the slowest learner has its gradient and the ring all-reduce, 2(n−1) messages of P/n values, is done:

      T(t+1) = max_a (T_a(t) + c_a(t)) + 2(n−1)·(α + (P/n)·bytes/β)

  (the standard α–β cost of a ring all-reduce, started once every learner has joined).
* **Neighbour mixing** (DPSGD: ``neighbour_mixing``, as implemented in :mod:`ddl.algorithms.dpsgd`: learner j
  sends w_j(t) when it starts step t, so the transfer overlaps its gradient): learner a starts step t+1 once its
  own gradient is done and every incoming neighbour's w_j(t) has arrived,

      T_a(t+1) = max(T_a(t) + c_a(t),  max_{j ∈ N(a), j ≠ a} (T_j(t) + comm(j→a)))

  and, without overlap (``overlap=False``: send after the gradient), ``T_j(t) + c_j(t) + comm(j→a)``.
  With ``shared_nic`` (the default) a learner's link is shared by the messages it sends (and receives) in one
  step, fairly: comm(j→a) = α + max(out-degree(j), in-degree(a))·B/β, so a graph of degree d pays d model
  transfers per step; without it every message has a link of its own (α + B/β).
  A complete graph (the topology says ``is_complete``) is mixed by an all-reduce of the weights after the
  gradient (as the Mixer does), so on it DPSGD costs what SSGD costs.
* **A periodic global average** (``global_average_every = H``): after every H-th step all learners wait for the
  slowest and average their weights by a ring all-reduce, T(t+1) = max_a T_a(t+1) + 2(n−1)·(α + (P/n)·bytes/β).
  It takes the place of that step's neighbour mixing (Gossip-PGA): an averaging step is a barrier, the
  learners' gradients then the all-reduce.
* A message's bytes are the model's times the algorithm's ``message_fraction`` (CHOCO-SGD's compressed rows)
  times its ``exchanges_per_step`` (gradient tracking sends weights and tracker together: twice the bytes, one
  latency); the global average's all-reduce moves whole models.

* **Asynchronous pairwise averaging** (``synchronous=False`` with ``neighbours_per_step=1``: AD-PSGD): no
  barrier.  Learner a's k-th computation takes c_a(k); when it ends, at t, the learner averages with one peer
  (one model message, α + B/β) and starts its next computation at t + α + B/β.  Events are taken in order of
  finish time (:class:`ddl.algorithms.asynchrony.EventSchedule`, the very schedule the algorithm runs); a step
  is n events, and it is done at the time of its n-th event.

A pattern the clock does not model is an error (:class:`ClockError`), never a silent guess: other asynchronous
patterns and synchronous mixing with a subset of the neighbours per step (``neighbours_per_step``).  Left out
on purpose: contention inside the switch fabric (beyond each learner's own link), the overlap of SSGD's
all-reduce with the backward pass (bucketed DDP), chunked/pipelined collectives.
See docs/clock.md.

All per-step work is vectorized over learners (numpy), so n = 1024 and thousands of steps take well under a
second; the neighbour tables of a static topology are built once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from ddl.algorithms import Communication, communication_of
from ddl.algorithms.asynchrony import EventSchedule
from ddl.errors import ConfigError, DDLError

# a fixed tag mixed into the run seed, so the clock's stream differs from every training stream of that seed
_CLOCK_STREAM_KEY = 0xC10C
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


class ClockError(DDLError):
    """Bad clock parameters: one line naming the flag and the accepted values."""


class TopologyLike(Protocol):
    """What the clock asks a topology (:class:`ddl.algorithms.topology.Topology` answers all of it).

    ``is_complete``: every learner averages all learners (mixing is an all-reduce); ``period``: the number of
    steps after which the graph repeats (1: static; None: not periodic, so its tables are rebuilt every step);
    ``neighbours(a, step)``: learner a's incoming neighbours at ``step``, a itself included or not."""

    name: str

    @property
    def n(self) -> int: ...

    @property
    def is_complete(self) -> bool: ...

    @property
    def period(self) -> int | None: ...

    def neighbours(self, a: int, step: int = 0) -> list[int]: ...


@dataclass(frozen=True)
class Network:
    """Independent links of latency ``latency_s`` (α) and bandwidth ``bandwidth_Bps`` (β, bytes per second).

    The default is a 10 GbE cluster: 50 µs per message (TCP through one switch) and 10 Gbit/s.
    """

    latency_s: float = 50e-6
    bandwidth_Bps: float = 10e9 / 8

    def __post_init__(self) -> None:
        if not self.latency_s >= 0:
            raise ClockError(f"--latency-us: must be ≥ 0, got {self.latency_s * 1e6:g}")
        if not self.bandwidth_Bps > 0:
            raise ClockError(f"--bandwidth-gbps: must be > 0, got {self.bandwidth_Bps * 8 / 1e9:g}")

    @classmethod
    def from_units(cls, latency_us: float, bandwidth_gbps: float) -> Network:
        return cls(latency_us * 1e-6, bandwidth_gbps * 1e9 / 8)

    def message_s(self, nbytes: float) -> float:
        """Time for one message of ``nbytes`` over one link."""
        return self.latency_s + nbytes / self.bandwidth_Bps

    def ring_allreduce_s(self, n: int, nbytes: float) -> float:
        """Ring all-reduce of a ``nbytes`` tensor over ``n`` learners: 2(n−1) messages of nbytes/n."""
        if n <= 1:
            return 0.0
        return 2 * (n - 1) * self.message_s(nbytes / n)


@dataclass(frozen=True)
class ComputeModel:
    """Per-learner, per-step compute times: ``base_s`` × log-normal jitter (mean 1) × occasional straggler factor."""

    base_s: float
    jitter: float = 0.0
    straggler_prob: float = 0.0
    straggler_slowdown: float = 1.0

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise ClockError(f"--compute-ms: must be > 0, got {self.base_s * 1e3:g}")
        if not self.jitter >= 0:
            raise ClockError(f"--jitter: must be ≥ 0, got {self.jitter:g}")
        if not 0 <= self.straggler_prob <= 1:
            raise ClockError(f"--straggler-prob: must be in [0, 1], got {self.straggler_prob:g}")
        if not self.straggler_slowdown >= 1:
            raise ClockError(f"--straggler-slowdown: must be ≥ 1, got {self.straggler_slowdown:g}")

    def sampler(self, n: int, seed: int) -> ComputeSampler:
        return ComputeSampler(self, n, seed)


class ComputeSampler:
    """Draws the compute-time matrix row by row from the clock's own generators.

    Jitter and stragglers come from two separate generators, each filled in step-major order, so the times of a
    step do not depend on how many steps are drawn at once (checked in the tests).
    """

    def __init__(self, model: ComputeModel, n: int, seed: int):
        self.model, self.n = model, n
        jit, strag = np.random.SeedSequence(entropy=int(seed), spawn_key=(_CLOCK_STREAM_KEY,)).spawn(2)
        self._jit = np.random.default_rng(jit)
        self._strag = np.random.default_rng(strag)

    def draw(self, steps: int) -> np.ndarray:
        """The next ``steps`` rows of compute times, [steps, n] seconds."""
        m = self.model
        z = self._jit.standard_normal((steps, self.n))
        u = self._strag.random((steps, self.n))
        factor = np.exp(m.jitter * z - 0.5 * m.jitter**2)
        return m.base_s * factor * np.where(u < m.straggler_prob, m.straggler_slowdown, 1.0)


# ---- topology → neighbour tables -------------------------------------------------------------------------


def neighbour_table(topology: TopologyLike, step: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Incoming neighbours other than the learner itself, padded: (index [n, k] int, valid [n, k] bool)."""
    n = topology.n
    rows = []
    for a in range(n):
        nb = topology.neighbours(a, step)
        rows.append([int(j) for j in nb if int(j) != a])
    k = max((len(r) for r in rows), default=0)
    idx = np.zeros((n, max(k, 1)), dtype=np.int64)
    valid = np.zeros((n, max(k, 1)), dtype=bool)
    for a, r in enumerate(rows):
        idx[a, : len(r)] = r
        valid[a, : len(r)] = True
    return idx, valid


def modelled(communication: Communication) -> Communication:
    """``communication`` if the clock models its pattern; a :class:`ClockError` naming what it does not."""
    if not communication.synchronous:
        if communication.neighbour_mixing and communication.neighbours_per_step == 1 \
                and not communication.gradient_allreduce and communication.global_average_every is None:
            return communication  # asynchronous pairwise averaging: the event schedule
        raise ClockError("--clock: the clock models one asynchronous pattern only, pairwise averaging with one "
                         "peer and no collective; run with --no-clock")
    if communication.neighbours_per_step is not None:
        raise ClockError("--clock: the clock does not model mixing with a subset of the neighbours per step; run "
                         "with --no-clock")
    return communication


def _communication(algo: str | Communication, cfg: Any = None) -> Communication:
    if isinstance(algo, Communication):
        return modelled(algo)
    try:
        return modelled(communication_of(algo, cfg))
    except ConfigError as e:
        raise ClockError(str(e)) from None


# ---- the recursion ---------------------------------------------------------------------------------------


class Clock:
    """Start times ``T_a(t)`` of every learner, advanced step by step.

    ``algo``: a registered algorithm's name or a :class:`Communication` (one that mixes neighbours needs
    ``topology``); ``message_bytes``: the size of one model (P × dtype bytes).  :meth:`advance` draws compute
    times from ``compute`` (seeded by ``seed``); :meth:`advance_with` takes an explicit compute matrix (tests,
    calibration).  Both return, per step, the time at which the last learner has finished it
    (``max_a T_a(t+1)``) — the time a run's step ``t+1`` record is stamped with.
    """

    def __init__(self, algo: str | Communication, n: int, network: Network, message_bytes: float,
                 compute: ComputeModel | None = None, topology: TopologyLike | None = None,
                 overlap: bool = True, seed: int = 0, shared_nic: bool = True):
        comm = _communication(algo)
        if comm.neighbour_mixing:
            if topology is None:
                raise ClockError("the clock of an algorithm that mixes neighbours needs a topology")
            if topology.n != n:
                raise ClockError(f"--learners: topology has {topology.n} learners, the clock {n}")
        else:
            topology = None  # nothing travels over it
        self.algo = None if isinstance(algo, Communication) else algo
        self.communication, self.n, self.network = comm, n, network
        self.message_bytes = float(message_bytes) * comm.message_fraction * comm.exchanges_per_step
        self.topology, self.overlap, self.shared_nic = topology, overlap, shared_nic
        self.compute = compute
        self._sampler = compute.sampler(n, seed) if compute is not None else None
        self.T = np.zeros(n)
        self.step = 0
        self._allreduce_s = network.ring_allreduce_s(n, self.message_bytes)
        self._average_s = network.ring_allreduce_s(n, float(message_bytes))  # a global average: whole models
        self._message_s = network.message_s(self.message_bytes)
        self._events: EventSchedule | None = None  # asynchronous: the event schedule, built on first use
        self._barrier = comm.synchronous and (comm.gradient_allreduce
                                              or (comm.neighbour_mixing and topology.is_complete))
        self._mixing = comm.neighbour_mixing and not self._barrier
        self._average_every = comm.global_average_every
        self._period = topology.period if self._mixing else 1
        self._tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @property
    def now(self) -> float:
        """Time at which every learner has finished all steps so far."""
        return float(self.T.max())

    def _table(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Incoming neighbours, their mask and each message's transfer time at ``step`` (cached per phase)."""
        if not self._period:
            return self._build_table(step)  # not periodic: rebuild every step
        key = step % self._period
        if key not in self._tables:
            self._tables[key] = self._build_table(step)
        return self._tables[key]

    def _build_table(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx, valid = neighbour_table(self.topology, step)
        transfers = np.ones(idx.shape)
        if self.shared_nic:
            in_deg = valid.sum(1)
            out_deg = np.bincount(idx[valid], minlength=self.n)
            transfers = np.maximum(out_deg[idx], in_deg[:, None])
        msg = self.network.latency_s + transfers * self.message_bytes / self.network.bandwidth_Bps
        return idx, valid, msg

    def advance(self, steps: int, history: bool = False) -> np.ndarray:
        """Advance ``steps`` steps with sampled compute times (chunked, so memory stays O(n·chunk))."""
        if self._sampler is None:
            raise ClockError("this clock has no compute model: use advance_with(compute_times)")
        if not self.communication.synchronous:
            return self._advance_events(steps, history)
        chunk = max(1, min(steps, 2**20 // max(self.n, 1)))
        parts, done = [], 0
        while done < steps:
            k = min(chunk, steps - done)
            parts.append(self.advance_with(self._sampler.draw(k), history))
            done += k
        return np.concatenate(parts) if parts else np.zeros((0, self.n) if history else 0)

    def _advance_events(self, steps: int, history: bool) -> np.ndarray:
        """An asynchronous algorithm's steps: n events each, done at the time of the last (``history``: every
        learner's clock then is that time — nobody waits, so the step's end is one instant)."""
        if self._events is None:
            self._events = EventSchedule(self.n, self._sampler.draw, self._message_s)
        out = np.empty((steps, self.n) if history else steps)
        for s in range(steps):
            for _ in range(self.n):
                self._events.pop()
            out[s] = self._events.now
            self.step += 1
        self.T = np.full(self.n, self._events.now)
        return out

    def advance_with(self, c: np.ndarray, history: bool = False) -> np.ndarray:
        """Advance one step per row of ``c`` ([steps, n] seconds); per-step completion times, or with
        ``history`` every learner's start time of the next step ([steps, n])."""
        if not self.communication.synchronous:
            raise ClockError("an asynchronous algorithm's clock draws its own compute times: use advance(steps)")
        c = np.asarray(c, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != self.n:
            raise ClockError(f"compute times must have shape [steps, {self.n}], got {list(c.shape)}")
        out = np.empty(c.shape if history else c.shape[0])
        T = self.T
        for i, c_t in enumerate(c):
            done = T + c_t  # own gradient finished
            averages = bool(self._average_every) and (self.step + 1) % self._average_every == 0
            if averages:  # the global average, in place of this step's mixing
                T = np.full(self.n, done.max() + self._average_s)
            elif self._barrier:
                T = np.full(self.n, done.max() + self._allreduce_s)
            elif self._mixing:
                idx, valid, msg = self._table(self.step)
                sent = T if self.overlap else done
                arrive = np.where(valid, sent[idx] + msg, -np.inf).max(axis=1)
                T = np.maximum(done, arrive)
            else:  # nothing sent this step
                T = done
            self.step += 1
            out[i] = T if history else T.max()
        self.T = T
        return out

    def describe(self) -> dict[str, Any]:
        """The clock's parameters, for summary.json and figures."""
        d: dict[str, Any] = {
            "algo": self.algo, "learners": self.n, "overlap": self.overlap, "shared_nic": self.shared_nic,
            "latency_s": self.network.latency_s, "bandwidth_Bps": self.network.bandwidth_Bps,
            "message_bytes": self.message_bytes, "message_s": self._message_s, "allreduce_s": self._allreduce_s,
            "topology": None if self.topology is None else self.topology.name,
        }
        if self.compute is not None:
            d.update({f"compute_{k}": v for k, v in asdict(self.compute).items()})
        return d


def simulate(algo: str | Communication, n: int, steps: int, compute: ComputeModel, network: Network,
             message_bytes: float, topology: TopologyLike | None = None, overlap: bool = True, seed: int = 0,
             shared_nic: bool = True) -> float:
    """Simulated seconds for ``steps`` steps of ``algo`` (a registered name or a :class:`Communication`): the
    time until every learner has finished them."""
    clock = Clock(algo, n, network, message_bytes, compute, topology, overlap, seed, shared_nic)
    clock.advance(steps)
    return clock.now


def model_message_bytes(num_params: int, dtype: str = "float32") -> int:
    """Bytes of one model message: parameter count × the dtype's size."""
    if dtype not in DTYPE_BYTES:
        raise ClockError(f"--dtype: {dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
    return int(num_params) * DTYPE_BYTES[dtype]


# ---- the clock of a training run -------------------------------------------------------------------------


class RunClock:
    """The clock beside a training run (main worker only): stamps metrics records with ``sim_time_s``.

    The base compute time is ``cfg.compute_ms`` or, when that is not given, measured: the run's mean wall time
    of one algorithm step on this worker divided by the learners it holds (what one learner's step costs on
    this device), fixed at the first record.  Everything else depends on the config and seed alone.
    """

    def __init__(self, cfg: Any, num_params: int, topology: TopologyLike | None, learners_per_worker: int):
        self.cfg = cfg
        self.num_params = num_params
        self.topology = topology
        self.m = max(1, learners_per_worker)
        # what the run's algorithm sends (config-dependent facts filled in); a pattern not modelled is an error
        self.communication = _communication(cfg.algo, cfg)
        self.clock: Clock | None = None
        self._base_s: float | None = None
        self.measured = cfg.compute_ms is None
        self.network = Network.from_units(cfg.latency_us, cfg.bandwidth_gbps)
        if not self.measured:
            self._start(cfg.compute_ms * 1e-3)

    @staticmethod
    def applies(cfg: Any) -> bool:
        """The clock is on (``--clock``).  An algorithm whose pattern it does not model is then an error when the
        run's clock is built (:func:`modelled`), never a run silently left without stamps."""
        return bool(cfg.clock)

    @property
    def base_s(self) -> float | None:
        """One learner's base compute time per step, once known (measured or configured)."""
        return self._base_s

    def restore(self, base_s: float | None) -> None:
        """Continue a resumed run with the base time its first process measured (the same simulated times)."""
        if base_s is not None and self.measured:
            self._start(float(base_s))

    def _start(self, base_s: float) -> None:
        self._base_s = base_s
        cfg = self.cfg
        compute = ComputeModel(base_s, cfg.jitter, cfg.straggler_prob, cfg.straggler_slowdown)
        self.clock = Clock(self.communication, cfg.learners, self.network,
                           model_message_bytes(self.num_params, cfg.dtype), compute, self.topology, cfg.clock_overlap,
                           cfg.seed, cfg.clock_shared_nic)

    def at(self, step: int, step_seconds: float, steps_timed: int) -> float:
        """Simulated seconds when step ``step`` is done; ``step_seconds``/``steps_timed``: this worker's
        measured algorithm time so far (used once, when the base compute time is measured)."""
        if self.clock is None:
            per_step = step_seconds / max(steps_timed, 1)
            self._start(max(per_step / self.m, 1e-9))
        if step > self.clock.step:
            self.clock.advance(step - self.clock.step)
        return self.clock.now

    def describe(self) -> dict[str, Any]:
        d = {"compute_measured": self.measured, "num_params": self.num_params}
        if self.clock is not None:
            d.update(self.clock.describe())
            d["algo"] = self.cfg.algo  # the clock was given the algorithm's declaration, the record names it
            d["sim_time_s"] = self.clock.now
            d["steps"] = self.clock.step
        return d


