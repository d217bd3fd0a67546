"""Learners on Ray actors: K actors, each holding a block of m = n / K learners (the simulator inside).

Every actor runs ``Trainer(cfg, comm=…).run()`` — the same loop and the same algorithm code as the simulator
and torchrun; only the transport under the :class:`~ddl.backends.Collective` differs.  Two transports:

``objects`` — Ray's own object store, no extra ports.  Each actor is a threaded actor whose ``deliver``
    method drops tensors into a mailbox keyed by (operation sequence number, sender); every actor issues the
    same operations in the same order, so the sequence numbers agree without coordination.  A sum over
    workers is an all-to-all: each actor ``ray.put``s its part once, sends the reference to every peer and
    adds the K parts in rank order, so all actors get bitwise the same sum.  The neighbour exchange sends
    rows by value and is awaited after the backward pass, as on torchrun.
``torch`` — torch.distributed (gloo, or nccl on GPU actors) *inside* the actors, rendezvous at a free port
    of actor 0: the :class:`~ddl.backends.torchdist.TorchDistCollective` of torchrun.  This is what
    ``ray.util.collective`` amounts to on CPU in Ray 2.60: its GLOO backend is torch.distributed's gloo
    (``collective_group/torch_gloo_collective_group.py``), because pygloo ships no wheels for Python > 3.10.
    Using torch.distributed directly also gives non-blocking point-to-point ops (ray.util.collective's
    send/recv block) and needs direct TCP connections between the actors' nodes.

Choice, by measurement (``benchmarks/bench_backends.py`` → ``benchmarks/results/backends.json``, key
``ray_transport``): ``torch`` is the default.  MLP on MNIST-5k, b = 25, 2-core CPU machine, fastest of 5 × 200
steps: SSGD 2.1 ms/step over ``torch`` vs 7.9 over ``objects`` (K = 2), 9.0 vs 23.0 (K = 4); DPSGD 1.3 vs
2.8 (K = 2), 5.8 vs 9.7 (K = 4) — ``objects`` is 1.3–3.7× slower in every case measured.  Every object-store
message is a Ray task submission (an RPC to the peer's worker), and an all-reduce over it takes K(K−1) of them
per step, while torch.distributed moves each tensor once per collective.  ``objects`` remains for clusters
whose nodes cannot open ports to each other.

Local cluster by default (``ray.init`` sized for this machine); ``--address`` joins an existing one.  Rank 0's
actor writes the run directory at the driver's absolute path, so on a multi-node cluster that path must be
on a filesystem shared by all nodes (or rank 0 must land on the driver's node).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import ray
import torch

from ddl.backends.base import Collective, PendingExchange
from ddl.backends.torchdist import TorchDistCollective, Traffic, check_divisible, choose_backend, nbytes
from ddl.config import ConfigError, TrainConfig

TRANSPORTS = ("torch", "objects")
DEFAULT_TRANSPORT = "torch"
DEFAULT_TIMEOUT_S = 1800.0  # a peer silent for this long is taken as dead (the driver usually notices first)
PROBE_TIMEOUT_S = 5.0


# ---- the object-store transport -------------------------------------------------------------------------
class Mailbox:
    """Tensors delivered by peers, keyed by (sequence number, sender); ``take`` blocks until one arrives."""

    def __init__(self) -> None:
        self._items: dict[tuple[int, int], torch.Tensor] = {}
        self._cv = threading.Condition()

    def put(self, key: tuple[int, int], value: torch.Tensor) -> None:
        with self._cv:
            self._items[key] = value
            self._cv.notify_all()

    def take(self, key: tuple[int, int], timeout: float) -> torch.Tensor:
        with self._cv:
            if not self._cv.wait_for(lambda: key in self._items, timeout):
                raise TimeoutError(f"ray: no tensor from worker {key[1]} (operation {key[0]}) within {timeout:.0f} s")
            return self._items.pop(key)


def _host(t: torch.Tensor) -> np.ndarray:
    # numpy arrays travel through Ray's object store without pickling their data (zero-copy reads)
    return t.detach().cpu().contiguous().numpy()


class _MailboxPending(PendingExchange):
    def __init__(self, comm: RayCollective, seq: int, peers: list[int], device: torch.device):
        super().__init__()
        self._comm, self._seq, self._peers, self._device = comm, seq, peers, device

    def wait(self) -> dict[int, torch.Tensor]:
        return {r: self._comm._take(self._seq, r).to(self._device) for r in self._peers}


class RayCollective(Collective):
    """A :class:`Collective` between Ray actors over the object store (see the module docstring)."""

    def __init__(self, rank: int, world: int, n: int, peers: list, mailbox: Mailbox,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        check_divisible(n, world)
        self.rank, self.world, self.n = rank, world, n
        self.peers = peers  # actor handles, by rank
        self.mailbox = mailbox
        self.timeout_s = timeout_s
        self.traffic = Traffic()
        self._seq = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _send(self, dst: int, seq: int, payload) -> None:
        # fire and forget: the call returns once the argument is serialized; the peer's mailbox orders arrivals
        self.peers[dst].deliver.remote((seq, self.rank), payload)

    def _take(self, seq: int, src: int) -> torch.Tensor:
        return self.mailbox.take((seq, src), self.timeout_s)

    def _to_all(self, seq: int, t: torch.Tensor, op: str) -> None:
        ref = ray.put(_host(t))  # one copy in the object store, read by every peer
        for r in range(self.world):
            if r != self.rank:
                self._send(r, seq, ref)
        self.traffic.add(op, (self.world - 1) * nbytes(t))

    def allreduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t.clone()
        seq = self._next()
        self._to_all(seq, t, "allreduce")
        mine = t.detach().cpu()
        parts = [mine if r == self.rank else self._take(seq, r) for r in range(self.world)]
        out = parts[0].clone()
        for p in parts[1:]:  # rank order on every actor: the same bits everywhere
            out += p
        return out.to(t.device)

    def exchange(self, sends: dict[int, torch.Tensor], recv_shapes: dict[int, torch.Size]) -> PendingExchange:
        seq = self._next()
        device = next(iter(sends.values())).device if sends else torch.device("cpu")
        for peer in sorted(sends):
            self._send(peer, seq, _host(sends[peer]))
            self.traffic.add("exchange", nbytes(sends[peer]))
        return _MailboxPending(self, seq, sorted(recv_shapes), device)

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        if self.world == 1:
            return t
        seq = self._next()
        if self.rank == src:
            self._to_all(seq, t, "broadcast")
            return t
        return self._take(seq, src).to(t.device)

    def gather_rows(self, W_local: torch.Tensor) -> torch.Tensor | None:
        if self.world == 1:
            return W_local
        seq = self._next()
        if self.rank != 0:
            self._send(0, seq, _host(W_local))
            self.traffic.add("gather", nbytes(W_local))
            return None
        return torch.cat([W_local.detach().cpu()] + [self._take(seq, r) for r in range(1, self.world)]).to(
            W_local.device)

    def barrier(self) -> None:
        self.allreduce_sum(torch.zeros(1))


# ---- the actor --------------------------------------------------------------------------------------------
class LearnerWorker:
    """One actor: learners ``[rank·m, (rank+1)·m)``, a mailbox for its peers' tensors and the training loop."""

    def __init__(self, rank: int, world: int, n: int):
        self.rank, self.world, self.n = rank, world, n
        self.mailbox = Mailbox()
        self.comm: Collective | None = None
        gpus = ray.get_gpu_ids()
        # Ray restricts CUDA_VISIBLE_DEVICES to the actor's GPU, so it is cuda:0 here
        self.device = torch.device("cuda", 0) if gpus and torch.cuda.is_available() else torch.device("cpu")

    def endpoint(self) -> tuple[str, int]:
        """This actor's node address and a free port: the rendezvous of the torch transport."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def connect(self, peers: list, transport: str, dist_backend: str, timeout_s: float,
                master: tuple[str, int] | None) -> None:
        if transport == "objects":
            self.comm = RayCollective(self.rank, self.world, self.n, peers, self.mailbox, timeout_s)
            return
        import torch.distributed as dist

        backend = choose_backend(dist_backend, self.device.type)
        host = f"[{master[0]}]" if ":" in master[0] else master[0]
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        dist.init_process_group(backend, init_method=f"tcp://{host}:{master[1]}", rank=self.rank,
                                world_size=self.world, timeout=timedelta(seconds=timeout_s))
        self.comm = TorchDistCollective(self.n)

    def deliver(self, key: tuple[int, int], payload) -> None:
        # a private, writable copy: the object-store buffer is read-only and released once this returns
        value = torch.from_numpy(np.array(payload)) if isinstance(payload, np.ndarray) else payload
        self.mailbox.put(key, value)

    def train(self, cfg: TrainConfig):
        from ddl.train import Trainer

        res = Trainer(cfg, comm=self.comm, device=self.device).run()
        return res if self.rank == 0 else None

    def call(self, fn: Callable, *args):
        """``fn(comm, device, *args)`` on this actor (benchmarks and tests that step the algorithm directly)."""
        return fn(self.comm, self.device, *args)

    def close(self) -> None:
        if self.comm is not None:
            self.comm.close()


# ---- the driver -------------------------------------------------------------------------------------------
def _probe(address: str) -> None:
    """Fail within seconds, with one line, when nothing listens at ``address`` (ray.init would retry for long)."""
    if address in ("auto", "local"):
        return
    u = urlparse(address if "://" in address else f"gcs://{address}")
    default_port = 10001 if u.scheme == "ray" else 6379
    try:
        host, port = u.hostname, u.port or default_port
    except ValueError as e:
        raise ConfigError(f"--address: {address!r} is not HOST:PORT or ray://HOST:PORT ({e})") from None
    if not host:
        raise ConfigError(f"--address: {address!r} is not HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        why = e.strerror or type(e).__name__
        raise ConfigError(
            f"--address: no Ray cluster reachable at {address} ({why}); start one with `ray start --head` "
            "or leave out --address for a local cluster"
        ) from None


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Connect to ``address`` or start a local cluster; False if Ray was already initialised (reuse it)."""
    if ray.is_initialized():
        return False
    quiet = {"logging_level": logging.WARNING, "log_to_driver": True}
    if address:
        _probe(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, TimeoutError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(
                f"--address: cannot join the Ray cluster at {address}: {why} (a cluster with token authentication "
                "needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN or ~/.ray/auth_token)"
            ) from None
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, num_cpus or 1), include_dashboard=False, **quiet)
    return True


def default_workers(n: int, cpus: int) -> int:
    """One actor per learner while the cluster has a CPU for each, else the largest divisor of n that fits."""
    return max(k for k in range(1, n + 1) if n % k == 0 and k <= max(cpus, 1))


def _free_cpus(want: int, wait_s: float = 15.0) -> int:
    """Free CPUs of the cluster, waiting a little for ``want`` of them: killed actors release theirs lazily."""
    deadline = time.monotonic() + wait_s
    while True:
        free = int(ray.available_resources().get("CPU", 0))
        if free >= want or time.monotonic() > deadline:
            return free
        time.sleep(0.2)


class RayWorkers:
    """K connected :class:`LearnerWorker` actors; a context manager that kills them (and a cluster it started)."""

    def __init__(self, n: int, workers: int | None = None, *, address: str | None = None,
                 transport: str = DEFAULT_TRANSPORT, dist_backend: str = "auto", device: str = "auto",
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        if transport not in TRANSPORTS:
            raise ConfigError(f"--ray-transport: {transport!r} is not one of {', '.join(TRANSPORTS)}")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers: must be ≥ 1, got {workers}")
        if workers is not None:
            check_divisible(n, workers)
        self.actors: list = []
        self._started = init_ray(address, workers)
        try:
            res = ray.cluster_resources()
            cpus, gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0))
            K = workers or default_workers(n, cpus)
            free = _free_cpus(K if cpus >= K else 0)
            if free < K:
                raise ConfigError(f"--workers: {K} actors need {K} free CPUs; the Ray cluster has {free} of {cpus}")
            if device.startswith("cuda"):
                if gpus < K:
                    raise ConfigError(f"--device: {device} gives each of the {K} actors a GPU; the cluster has {gpus}")
                num_gpus = 1
            else:
                num_gpus = 1 if device == "auto" and gpus >= K else 0
            self.world, self.n, self.transport = K, n, transport
            actor = ray.remote(LearnerWorker).options(num_cpus=1, num_gpus=num_gpus, max_concurrency=max(2, K))
            self.actors = [actor.remote(r, K, n) for r in range(K)]
            master = ray.get(self.actors[0].endpoint.remote()) if transport == "torch" else None
            self._all("connect", self.actors, transport, dist_backend, timeout_s, master)
        except BaseException:
            self.close()
            raise

    def _all(self, method: str, *args) -> list:
        """``method(*args)`` on every actor; the first failure kills all of them (peers would wait forever)."""
        refs = [getattr(a, method).remote(*args) for a in self.actors]
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                self._kill()
                cause = getattr(e, "cause", None)
                if isinstance(cause, (ConfigError, ValueError, FileNotFoundError, TimeoutError)):
                    raise cause from None
                raise
            except ray.exceptions.RayActorError as e:
                self._kill()
                raise RuntimeError(f"ray: a learner actor died: {str(e).splitlines()[0]}") from None
        return ray.get(refs)

    def train(self, cfg: TrainConfig):
        """The :class:`~ddl.train.TrainResult` of rank 0 (which wrote the run directory)."""
        return self._all("train", cfg)[0]

    def call(self, fn: Callable, *args) -> list[Any]:
        """``fn(comm, device, *args)`` on every actor, results by rank."""
        return self._all("call", fn, *args)

    def _kill(self) -> None:
        for a in self.actors:
            ray.kill(a)
        self.actors = []

    def close(self) -> None:
        if self.actors:
            try:
                ray.get([a.close.remote() for a in self.actors], timeout=30)
            except Exception:  # closing is best effort: the actors are killed next anyway
                pass
            self._kill()
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def train_ray(cfg: TrainConfig):
    """``ddl train --backend ray``: train on K actors and return rank 0's TrainResult."""
    from ddl.train import default_out

    # actors may not share the driver's working directory: give them absolute paths (the driver's), and no
    # progress bar (Ray forwards actor output line by line; the driver prints the summary)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    data_dir = str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None
    run_cfg = dataclasses.replace(cfg, out=str(out.resolve()), data_dir=data_dir, progress=False)
    with RayWorkers(cfg.learners, cfg.workers, address=cfg.address, transport=cfg.ray_transport,
                    dist_backend=cfg.dist_backend, device=cfg.device) as pool:
        return pool.train(run_cfg)
