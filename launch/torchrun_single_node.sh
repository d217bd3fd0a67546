#!/usr/bin/env bash
# Single node, several GPUs (or CPU processes): one torchrun rank per GPU, n learners split over the ranks.
#   NPROC=4 launch/torchrun_single_node.sh --algo dpsgd --learners 16 --epochs 100 --out runs/dp16
# NPROC defaults to the number of visible GPUs (1 without any); nccl is chosen on GPUs, gloo on CPU
# (override with --dist-backend). Extra arguments go to `ddl train`.
set -euo pipefail
if [[ -z "${NPROC:-}" ]]; then
  NPROC=$(python -c "import torch; print(max(torch.cuda.device_count(), 1))")
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec torchrun --standalone --nproc-per-node "$NPROC" -m ddl train --backend torchrun "$@"
