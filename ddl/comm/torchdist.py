"""Learners on torch.distributed ranks (``torchrun``): gloo on CPU, nccl on GPU.

Rank r of K holds the contiguous block of m = n / K learners ``[r·m, (r+1)·m)`` and runs the simulator's
vectorized step on them; this module only moves tensors between ranks:

* sum over workers → ``dist.all_reduce`` (SSGD's gradient sum, the complete-graph mix, evaluation);
* neighbour exchange → ``dist.batch_isend_irecv``, started in ``Mixer.start`` and waited for in
  ``Mixer.finish``, so the transfer runs while the backward pass computes;
* checkpoint rows → ``dist.gather`` to rank 0; ``dist.broadcast`` for the stop decision.

With gloo every tensor crosses through host memory (gloo's transport works on CPU buffers), so gloo also
serves ``--device cuda``; nccl keeps tensors on ``cuda:LOCAL_RANK``.  Joining the process group a torchrun
launch describes is the launcher's job (:func:`ddl.drivers.torchrun.setup_torchrun`).
"""

from __future__ import annotations

from collections import defaultdict

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
