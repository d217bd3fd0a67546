"""Learners on torch.distributed ranks (``torchrun``): gloo on CPU, nccl on GPU.

Rank r of K holds the contiguous block of m = n / K learners ``[r·m, (r+1)·m)`` and runs the simulator's
vectorized step on them; this module only moves tensors between ranks:

* sum over workers → ``dist.all_reduce`` (SSGD's gradient sum, the complete-graph mix, evaluation);
* neighbour exchange → ``dist.batch_isend_irecv``, started in ``Mixer.start`` and waited for in
  ``Mixer.finish``, so the transfer runs while the backward pass computes;
* checkpoint rows → ``dist.gather`` to rank 0; ``dist.broadcast`` for the stop decision.

With gloo every tensor crosses through host memory (gloo's transport works on CPU buffers), so gloo also
serves ``--device cuda``; nccl keeps tensors on ``cuda:LOCAL_RANK``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import timedelta

import torch
import torch.distributed as dist

from ddl.comm.base import Collective, PendingExchange
from ddl.errors import ConfigError

DIST_BACKENDS = ("auto", "gloo", "nccl")


class Traffic:
    """Payload bytes this worker sent, by operation, as the transport's algorithm moves them.

    Counted at the API, not on the wire: protocol framing and control messages are not included (the
    benchmark measures those separately from the loopback interface's counters).
    """

    def __init__(self) -> None:
        self.bytes: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, op: str, nbytes: float) -> None:
        self.bytes[op] += nbytes
        self.calls[op] += 1

    def reset(self) -> None:
        self.bytes.clear()
        self.calls.clear()

    def snapshot(self) -> dict:
        return {"bytes": dict(self.bytes), "calls": dict(self.calls)}


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


class _TorchPending(PendingExchange):
    def __init__(self, works, recvs: dict[int, torch.Tensor], keep: list[torch.Tensor], device: torch.device):
        super().__init__()
        self._works, self._recvs, self._keep, self._device = works, recvs, keep, device

    def wait(self) -> dict[int, torch.Tensor]:
        for w in self._works:
            w.wait()
        self._keep = []  # the send buffers may be freed once the sends completed
        return {r: t.to(self._device) for r, t in self._recvs.items()}


class TorchDistCollective(Collective):
    """A :class:`Collective` over the default torch.distributed process group (already initialised)."""

    def __init__(self, n: int):
        if not dist.is_initialized():
            raise RuntimeError("TorchDistCollective needs an initialised torch.distributed process group")
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        check_divisible(n, self.world)
        self.n = n
        self.backend = dist.get_backend()
        # gloo moves host buffers; nccl moves device buffers of the rank's own GPU
        cuda = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        self.comm_device = torch.device("cpu") if self.backend == "gloo" else cuda
        self.traffic = Traffic()

    def _stage(self, t: torch.Tensor) -> torch.Tensor:
        """A private contiguous copy on the transport's device (collectives work in place)."""
        return t.detach().to(self.comm_device, copy=True).contiguous()

    def allreduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        buf = self._stage(t)
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        # ring all-reduce: each worker sends 2(K−1)/K of the tensor (reduce-scatter + all-gather)
        self.traffic.add("allreduce", 2 * (self.world - 1) / self.world * nbytes(buf))
        return buf.to(t.device)

    def exchange(self, sends: dict[int, torch.Tensor], recv_shapes: dict[int, torch.Size]) -> PendingExchange:
        ops, keep, recvs = [], [], {}
        dtype = next(iter(sends.values())).dtype if sends else torch.get_default_dtype()
        device = next(iter(sends.values())).device if sends else self.comm_device
        # one list, posted together: the same order on every rank is not needed for batch_isend_irecv, but the
        # sends go first so that gloo starts moving data before it blocks on anything
        for peer in sorted(sends):
            buf = self._stage(sends[peer])
            keep.append(buf)
            ops.append(dist.P2POp(dist.isend, buf, peer))
            self.traffic.add("exchange", nbytes(buf))
        for peer in sorted(recv_shapes):
            recvs[peer] = torch.empty(recv_shapes[peer], dtype=dtype, device=self.comm_device)
            ops.append(dist.P2POp(dist.irecv, recvs[peer], peer))
        works = dist.batch_isend_irecv(ops) if ops else []
        return _TorchPending(works, recvs, keep, device)

    def broadcast(self, t: torch.Tensor, src: int = 0) -> torch.Tensor:
        buf = self._stage(t)
        dist.broadcast(buf, src)
        if self.rank == src:
            self.traffic.add("broadcast", (self.world - 1) * nbytes(buf))
        return buf.to(t.device)

    def gather_rows(self, W_local: torch.Tensor) -> torch.Tensor | None:
        buf = self._stage(W_local)
        parts = [torch.empty_like(buf) for _ in range(self.world)] if self.rank == 0 else None
        dist.gather(buf, parts, dst=0)
        if self.rank != 0:
            self.traffic.add("gather", nbytes(buf))
            return None
        return torch.cat(parts).to(W_local.device)

    def barrier(self) -> None:
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def check_divisible(n: int, world: int) -> None:
    if n % world:
        raise ConfigError(
            f"--learners: {n} learners cannot be split evenly over {world} workers; use a multiple of {world}"
        )


def choose_backend(requested: str, device: str) -> str:
    """The torch.distributed backend for ``--dist-backend`` and ``--device``, or a one-line ConfigError."""
    if requested not in DIST_BACKENDS:
        raise ConfigError(f"--dist-backend: {requested!r} is not one of {', '.join(DIST_BACKENDS)}")
    cuda = torch.cuda.is_available()
    if requested == "auto":
        return "nccl" if cuda and device != "cpu" and dist.is_nccl_available() else "gloo"
    if requested == "nccl":
        if not cuda:
            raise ConfigError("--dist-backend: nccl needs a CUDA GPU and none is available; use --dist-backend gloo")
        if not dist.is_nccl_available():
            raise ConfigError("--dist-backend: this torch build has no nccl; use --dist-backend gloo")
        if device == "cpu":
            raise ConfigError("--device: cpu cannot be used with --dist-backend nccl (nccl moves GPU tensors)")
    if requested == "gloo" and not dist.is_gloo_available():
        raise ConfigError("--dist-backend: this torch build has no gloo; use --dist-backend nccl")
    return requested


def rank_device(backend: str, device: str, local_rank: int) -> torch.device:
    """The device of a rank: its own GPU with nccl; with gloo the host unless ``--device cuda`` is asked for."""
    if backend == "nccl" or device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device: {device} requested but no CUDA device is available")
        count = torch.cuda.device_count()
        if device.startswith("cuda:"):
            return torch.device(device)
        if local_rank >= count:
            raise ConfigError(f"--nproc-per-node: local rank {local_rank} has no GPU ({count} visible)")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_torchrun(n: int, dist_backend: str = "auto", device: str = "auto",
                   workers: int | None = None) -> tuple[TorchDistCollective, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT).

    Every check that can fail does so *before* the process group is joined and identically on every rank, so
    a bad configuration ends all ranks at once instead of leaving some waiting in a collective.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise ConfigError(
            "--backend: torchrun needs the torchrun launcher (RANK/WORLD_SIZE are not set); run "
            "`torchrun --nproc-per-node K -m ddl train --backend torchrun ...`"
        )
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if workers is not None and workers != world:
        raise ConfigError(
            f"--workers: {workers} given but torchrun started {world} ranks (--nnodes × --nproc-per-node)"
        )
    check_divisible(n, world)
    backend = choose_backend(dist_backend, device)
    dev = rank_device(backend, device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kw = {"device_id": dev} if backend == "nccl" else {}
        attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
        if attempt > 0:
            # workers restarted by torchrun meet in the agent's store, which still holds the previous attempt's
            # keys (the dead workers' addresses): a prefix per attempt keeps them from being read
            from torch.distributed.rendezvous import _create_c10d_store

            base = _create_c10d_store(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), rank, world,
                                      timedelta(minutes=10))
            kw["store"] = dist.PrefixStore(f"ddl/attempt_{attempt}", base)
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kw)
    return TorchDistCollective(n), dev
