#!/usr/bin/env bash
# The whole test suite on this machine, slow and vllm tests included. The `gpu` tests run where CUDA is (a GPU
# machine) and are skipped cleanly elsewhere (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The dashboard's end-to-end test drives Debian's Chromium (never a downloaded browser).
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "test: installing Debian's chromium for the dashboard test"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
    else
        echo "test: chromium is missing (apt-get install chromium); the browser test will be skipped" >&2
    fi
fi
.venv/bin/ruff check harness tests benchmarks dashboard scripts
.venv/bin/python -m pytest --durations=15 "$@"
