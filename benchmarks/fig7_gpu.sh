#!/usr/bin/env bash
# The paper's large-model experiment (Fig. 7) in one command on one H100/H200 (target: ≤ 10 minutes):
# launch/recipes/fig7_gpu.yaml — full-width ResNet-18 and DenseNet-121, 16 learners × b = 512, SSGD vs DPSGD,
# full Fashion-MNIST (CIFAR-10 with augmentation when --data-dir holds cifar-10-batches-py/), a 16-epoch compressed
# schedule, noise measured during training, the final layer analysed on the GPU.  Writes
#   benchmarks/results/fig7_gpu/          the sweep (runs, results.csv, report/ with the Fig. 7 section)
#   benchmarks/results/fig7_gpu/case/     case_study.md, its figures and case_study.json
#   benchmarks/results/fig7_gpu.json      the machine, the settings, each run's status, time and numbers
# (and copies the JSON, the case study and the log to $OUT when that is set).
#
#   bash benchmarks/fig7_gpu.sh [--data-dir DIR]     # on a machine with a CUDA GPU
#   bash benchmarks/fig7_gpu.sh --smoke              # every path on the CPU, tiny sizes (about a minute alone)
#
# Data: --data-dir DIR, else data/fashion-mnist (`ddl data pack --dataset fashion-mnist --to data/fashion-mnist`
# copies it into the git-ignored data/ so that it travels with the checkout), else
# /usr/share/datasets/fashion-mnist.  Python: $PYTHON, else python3.  Without a GPU (and without --smoke) it says
# so and exits 0.
set -u -o pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
smoke=0
data_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) smoke=1 ;;
        --data-dir) data_dir="$2"; shift ;;
        --data-dir=*) data_dir="${1#*=}" ;;
        *) echo "fig7_gpu.sh: unknown argument $1 (accepted: --smoke, --data-dir DIR)"; exit 2 ;;
    esac
    shift
done
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "fig7_gpu.sh: $PY cannot import torch; set PYTHON to an interpreter with PyTorch. Nothing was run."
    exit 0
fi
if [ "$smoke" = 0 ] && ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "fig7_gpu.sh: no CUDA GPU is visible to $PY: nothing to run ('--smoke' checks every path on the CPU)."
    exit 0
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ -z "$data_dir" ]; then
    for d in data/cifar10 data/fashion-mnist /usr/share/datasets/fashion-mnist; do
        [ -d "$d" ] && { data_dir="$d"; break; }
    done
fi
[ -n "$data_dir" ] || { echo "fig7_gpu.sh: no data: give --data-dir (Fashion-MNIST IDX files or cifar-10-batches-py/)"; exit 2; }
data=(--dataset fashion-mnist --data-dir "$data_dir")
[ -d "$data_dir/cifar-10-batches-py" ] && data=(--dataset cifar10 --augment --data-dir "$data_dir")

if [ "$smoke" = 1 ]; then
    out=benchmarks/results/fig7_gpu_smoke
    # the recipe's every path (both models, both algorithms, bf16, BN recalibration, noise, analysis, report) at
    # toy sizes on the CPU; the numbers mean nothing
    sizes=(--device cpu --width 2 --train-per-class 4 --test-per-class 2 --batch-size 2 --epochs 2
           --lr-milestones 1 --warmup-epochs 1 --eval-every 1 --eval-samples 40 --bn-samples 16 --measure-noise 2
           --noise-samples 16 --noise-top-k 2 --noise-lanczos-max-iter 5 --test-samples 20 --threads 1)
else
    out=benchmarks/results/fig7_gpu
    sizes=()
fi
log="$out.log"
mkdir -p "$(dirname "$out")"
rm -rf "$out"
start=$(date +%s)
timeout -k 10 "${DDL_FIG7_TIMEOUT_S:-900}" "$PY" -m ddl sweep launch/recipes/fig7_gpu.yaml --out "$out" "${data[@]}" \
    "${sizes[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
wall=$(( $(date +%s) - start ))
[ "$rc" != 0 ] && echo "fig7_gpu.sh: the sweep ended with status $rc after ${wall}s (what finished is reported)"
"$PY" -m ddl.report.deep_case "$out" --out "$out/case" 2>&1 | tee -a "$log"
"$PY" -m benchmarks.fig7_summary "$out" --wall-s "$wall" --sweep-status "$rc" --smoke "$smoke" \
    --out "$out.json" 2>&1 | tee -a "$log"
if [ -n "${OUT:-}" ]; then
    cp -r "$out.json" "$log" "$OUT/" 2>/dev/null
    [ -d "$out/case" ] && cp -r "$out/case" "$OUT/"
    [ -d "$out/report" ] && cp -r "$out/report" "$OUT/"
fi
exit "$rc"
