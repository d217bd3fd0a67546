#!/usr/bin/env bash
# Start or stop a Ray cluster for `ddl train --backend ray`.
#   launch/ray_cluster.sh head [PORT]          on the head node (default port 6379); prints the address
#   launch/ray_cluster.sh worker HEAD:PORT     on each worker node
#   launch/ray_cluster.sh stop                 on every node
# Every node needs the same Python environment with ddl installed (or the docker/ images) and, for the
# default torch transport, open TCP ports between nodes (gloo/nccl pick free ports). NUM_CPUS / NUM_GPUS
# override what Ray detects; each learner actor takes one CPU (and one GPU with --device cuda).
# Token authentication is on (RAY_AUTH_MODE=token; Ray >= 2.52 understands it): `head` creates the token in
# ~/.ray/auth_token if there is none; give every worker node and the driver the same token, in that file or
# in RAY_AUTH_TOKEN. Set RAY_AUTH_MODE=disabled to run without it on a closed network.
set -euo pipefail
export RAY_AUTH_MODE="${RAY_AUTH_MODE:-token}"
res=()
[[ -n "${NUM_CPUS:-}" ]] && res+=(--num-cpus "$NUM_CPUS")
[[ -n "${NUM_GPUS:-}" ]] && res+=(--num-gpus "$NUM_GPUS")
case "${1:-}" in
  head)
    port="${2:-6379}"
    if [[ "$RAY_AUTH_MODE" == token && -z "${RAY_AUTH_TOKEN:-}" ]]; then
      ray get-auth-token --generate > /dev/null
    fi
    ray start --head --port "$port" --include-dashboard=false "${res[@]}"
    echo "cluster address: $(hostname -I 2>/dev/null | awk '{print $1}'):$port"
    ;;
  worker)
    ray start --address "${2:?usage: ray_cluster.sh worker HEAD:PORT}" "${res[@]}"
    ;;
  stop)
    ray stop
    ;;
  *)
    echo "usage: $0 head [PORT] | worker HEAD:PORT | stop" >&2
    exit 2
    ;;
esac
