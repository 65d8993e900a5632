#!/usr/bin/env bash
# Throughput of amuro's fine-tuning step, greedy decoder and scorers on an OLMo-1B-shaped
# model (random weights) on one NVIDIA GPU: the rates behind README's cost estimate.
#
#   OUT=/some/folder bash benchmarks/gpu.sh     # from the repository root; ≈ 5 min on an H200
#
# Writes $OUT/gpu.json (default benchmarks/gpu.json), gpu_bench.log and nvidia-smi.txt. Needs
# only python3 with torch (CUDA), transformers and numpy: no network, no hub, no polars or
# snakemake. BUDGET_S (default 240) is the seconds of timed loops; the run is stopped after
# 470 s whatever happens, keeping the measurements finished so far. Then, anywhere with the
# project's environment:  python scripts/cost_estimate.py --bench $OUT/gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks}"
mkdir -p "$out"
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
PYTHONPATH="$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    timeout 470 python3 benchmarks/gpu_bench.py --device cuda --budget-s "${BUDGET_S:-240}" \
    --out "$out/gpu.json" "$@" 2>&1 | tee "$out/gpu_bench.log"
