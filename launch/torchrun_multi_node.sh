#!/usr/bin/env bash
# Several nodes: run this same command on every node; they meet at the c10d rendezvous endpoint.
#   MASTER=node0.example:29500 NNODES=2 NPROC=8 launch/torchrun_multi_node.sh --algo ssgd --learners 16 ...
# MASTER   host:port of the rendezvous (any node's reachable address; port free on that node)
# NNODES   number of nodes;  NPROC  ranks per node (default: visible GPUs, 1 without any)
# RUN_ID   rendezvous id shared by the nodes of one run (default: ddl)
# The run directory is written by global rank 0 only; --out should be on a filesystem that node can write.
# If gloo/nccl picks the wrong network interface, set GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME.
set -euo pipefail
: "${MASTER:?set MASTER=host:port of the rendezvous endpoint}"
: "${NNODES:?set NNODES to the number of nodes}"
if [[ -z "${NPROC:-}" ]]; then
  NPROC=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec torchrun --nnodes "$NNODES" --nproc-per-node "$NPROC" \
  --rdzv-backend c10d --rdzv-endpoint "$MASTER" --rdzv-id "${RUN_ID:-ddl}" \
  -m ddl train --backend torchrun "$@"
