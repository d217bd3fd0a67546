#!/usr/bin/env bash
# Run a training on an existing Ray cluster (the driver runs here; K actors train on the cluster).
#   RAY_ADDRESS=10.0.0.1:6379 WORKERS=16 launch/ray_submit.sh --algo dpsgd --learners 16 --out /shared/runs/dp16
# RAY_ADDRESS  cluster address (default: auto = the cluster this node belongs to)
# WORKERS      number of actors K (default: one per learner, up to the cluster's CPUs)
# The actor of rank 0 writes --out: use a path on a filesystem shared by all nodes (or one that exists on the
# node where rank 0 is placed). An unreachable address fails within seconds with one line.
# With token authentication (as launch/ray_cluster.sh starts it), this machine needs the cluster's token in
# ~/.ray/auth_token or RAY_AUTH_TOKEN; RAY_AUTH_MODE=disabled for a cluster started without it.
set -euo pipefail
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
args=(--backend ray --address "${RAY_ADDRESS:-auto}")
[[ -n "${WORKERS:-}" ]] && args+=(--workers "$WORKERS")
exec ddl train "${args[@]}" "$@"
