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
# Each check's failure is remembered and the script exits 1 if any failed (pytest's 5, "no test selected", passes).
{
    failed=0
    check() {
        "$@"
        local rc=$?
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then echo "gpu_checks: FAILED ($rc): $*"; failed=1; fi
    }
    check nvidia-smi --query-gpu=name,memory.total --format=csv
    check python3 -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.cuda.is_available()); sys.exit(0 if torch.cuda.is_available() else 1)"
    check python3 -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
    check python3 -m pytest -q -m gpu tests/test_evolve*.py tests/test_merge*.py -p no:cacheprovider
    exit $failed
} 2>&1 | tee "$out/gpu_checks.log"
exit "${PIPESTATUS[0]}"
