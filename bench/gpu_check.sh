#!/usr/bin/env bash
# GPU check of a new box, one GPU, under 9 minutes: bf16 generation, reward training and PPO on
# the demo model (tokens/s, peak GPU memory, MFU), QLoRA steps of every stage, then the
# 2-process data-parallel test. Fails at once, saying why, without a GPU.
#
#   bench/gpu_check.sh [BASE_MODEL]      # default var/models/smollm2-135m-instruct
#
# PYTHON (default .venv/bin/python) runs it; HONE_GPU_PEAK_TFLOPS overrides the card's bf16
# peak used for MFU (bench/gpu_check.py has the table). QLoRA needs requirements-gpu.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
BASE=${1:-var/models/smollm2-135m-instruct}

fail() { echo "gpu_check: $*" >&2; exit 2; }
command -v nvidia-smi >/dev/null 2>&1 || fail "no NVIDIA GPU here (nvidia-smi not found): this check needs one"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >/dev/null 2>&1 \
  || fail "nvidia-smi finds no GPU it can use"
# a path or a command name (PYTHON=python3)
found=$(command -v "$PYTHON") || fail "no Python at $PYTHON (make venv, or set PYTHON)"
PYTHON=$found
"$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
  || fail "torch sees no CUDA GPU (a CPU build of torch? pip install torch, the CUDA build)"
[ -f "$BASE/config.json" ] || fail "no base model at $BASE (make base-model)"
"$PYTHON" -c 'import bitsandbytes' 2>/dev/null \
  || echo "gpu_check: bitsandbytes missing, the QLoRA parts will fail: pip install -r requirements-gpu.txt" >&2

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
status=0
echo "== training/ml on the GPU (bench/gpu_check.py) =="
timeout 300 "$PYTHON" bench/gpu_check.py --base "$BASE" || status=$?
# DDP over gloo between CPU processes, as in CI: two processes cannot share one GPU with NCCL.
echo "== 2-process data-parallel test (tests/training/ml/test_distributed.py) =="
CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=1 timeout 240 \
  "$PYTHON" -m pytest tests/training/ml/test_distributed.py -q -p no:django || status=$?
echo "gpu_check: exit status $status"
exit "$status"
