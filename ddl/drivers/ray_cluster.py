"""Learners on Ray actors: K actors, each holding a block of m = n / K learners (the simulator inside).

Every actor runs ``Trainer(cfg, comm=…).run()`` — the same loop and the same algorithm code as the simulator
and torchrun; only the transport under the :class:`~ddl.comm.Collective` differs.  Two transports:

``objects`` — Ray's own object store, no extra ports.  Each actor is a threaded actor whose ``deliver``
    method drops tensors into a mailbox keyed by (operation sequence number, sender); every actor issues the
    same operations in the same order, so the sequence numbers agree without coordination.  A sum over
    workers is an all-to-all: each actor ``ray.put``s its part once, sends the reference to every peer and
    adds the K parts in rank order, so all actors get bitwise the same sum.  The neighbour exchange sends
    rows by value and is awaited after the backward pass, as on torchrun.
``torch`` — torch.distributed (gloo, or nccl on GPU actors) *inside* the actors, rendezvous at a free port
    of actor 0: the :class:`~ddl.comm.torchdist.TorchDistCollective` of torchrun.  This is what
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

Faults: when an actor dies (its process killed, its node lost) the driver kills the others, starts K fresh actors
and resumes the run from its last checkpoint (:mod:`ddl.rundir.checkpoint`), at most ``--ray-max-restarts`` times; then
it gives up with one line.  Ray's own actor restarts are not used: a restarted actor would rejoin a training loop
whose peers are blocked in a collective with the dead one, so the whole group is restarted instead.

Local cluster by default (``ray.init`` sized for this machine); ``--address`` joins an existing one.  Rank 0's
actor writes the run directory at the driver's absolute path, so on a multi-node cluster that path must be
on a filesystem shared by all nodes (or rank 0 must land on the driver's node).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import ray
import torch

from ddl.comm.base import Collective
from ddl.comm.ray_mailbox import DEFAULT_TIMEOUT_S, Mailbox, RayCollective
from ddl.comm.torchdist import TorchDistCollective, check_divisible, choose_backend
from ddl.config import TrainConfig
from ddl.errors import ConfigError, DDLError

TRANSPORTS = ("torch", "objects")
DEFAULT_TRANSPORT = "torch"
PROBE_TIMEOUT_S = 5.0
PING_TIMEOUT_S = 10.0


class WorkerDied(RuntimeError):
    """A learner actor's process ended (killed, crashed, node lost) while the actors were working together."""


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
        from ddl.loop.train import Trainer

        res = Trainer(cfg, comm=self.comm, device=self.device).run()
        return res if self.rank == 0 else None

    def pid(self) -> int:
        """This actor's process id (liveness checks; tests that kill an actor)."""
        return os.getpid()

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
                cause = getattr(e, "cause", None)
                if isinstance(cause, (DDLError, ValueError, FileNotFoundError, TimeoutError)):
                    self._kill()
                    raise cause from None
                # a peer's death shows up first as a failed collective (gloo: connection closed) in the others
                dead = self._dead()
                self._kill()
                if dead:
                    raise WorkerDied(f"ray: learner actor {dead[0]} of {self.world} died") from None
                raise
            except ray.exceptions.RayActorError as e:
                self._kill()
                raise WorkerDied(f"ray: a learner actor died ({str(e).splitlines()[0]})") from None
        return ray.get(refs)

    def _dead(self) -> list[int]:
        """Ranks of the actors that no longer answer."""
        dead = []
        for r, a in enumerate(self.actors):
            try:
                ray.get(a.pid.remote(), timeout=PING_TIMEOUT_S)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                dead.append(r)
        return dead

    def train(self, cfg: TrainConfig):
        """The :class:`~ddl.loop.train.TrainResult` of rank 0 (which wrote the run directory)."""
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
    """``ddl train --backend ray``: train on K actors and return rank 0's TrainResult.

    When an actor dies, all actors are replaced and the run resumes from its last checkpoint, up to
    ``cfg.ray_max_restarts`` times; after that one :class:`DDLError` line says so.
    """
    from ddl.loop.train import default_out
    from ddl.rundir.checkpoint import list_checkpoints

    # actors may not share the driver's working directory: give them absolute paths (the driver's), and no
    # progress bar (Ray forwards actor output line by line; the driver prints the summary)
    out = Path(cfg.out) if cfg.out else default_out(cfg)
    data_dir = str(Path(cfg.data_dir).resolve()) if cfg.data_dir else None
    run_cfg = dataclasses.replace(cfg, out=str(out.resolve()), data_dir=data_dir, progress=False)
    started = init_ray(cfg.address, cfg.workers)  # one cluster for every attempt
    restarts = 0
    try:
        while True:
            try:
                with RayWorkers(cfg.learners, cfg.workers, address=cfg.address, transport=cfg.ray_transport,
                                dist_backend=cfg.dist_backend, device=cfg.device) as pool:
                    return pool.train(run_cfg)
            except WorkerDied as e:
                if restarts >= cfg.ray_max_restarts:
                    raise DDLError(
                        f"{e}; gave up after {restarts} restart{'s' if restarts != 1 else ''} (--ray-max-restarts "
                        f"{cfg.ray_max_restarts}); continue from the last checkpoint with "
                        f"`ddl train --out {out} --resume`"
                    ) from None
                restarts += 1
                print(f"ddl: warning: {e}; restarting the actors ({restarts} of {cfg.ray_max_restarts}) from the "
                      "last checkpoint", file=sys.stderr, flush=True)
                if list_checkpoints(out / "checkpoints"):
                    run_cfg = dataclasses.replace(run_cfg, resume=True)
                else:  # died before the first checkpoint: the directory is this run's own, start it again
                    run_cfg = dataclasses.replace(run_cfg, overwrite=True)
    finally:
        if started and ray.is_initialized():
            ray.shutdown()
