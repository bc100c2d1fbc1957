#!/usr/bin/env bash
# The GPU checks, run on a lent GPU machine (device tool) from the repo root. The machine has Python 3.12, torch
# with CUDA, transformers, safetensors, pandas, pytest; the rest travels as wheels in .whl/ (made here by
# scripts/gpu_wheels.sh). Writes its report under $OUT (or results/gpu/ without $OUT).
set -uo pipefail
out=${OUT:-results/gpu}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 HARNESS_RESULTS=/tmp/harness-results
{
    nvidia-smi --query-gpu=name,memory.total --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
    python3 -m pytest -q -m gpu tests/test_evolve*.py tests/test_merge*.py -p no:cacheprovider || true
} 2>&1 | tee "$out/gpu_checks.log"
