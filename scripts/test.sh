#!/usr/bin/env bash
# The whole test suite on this machine: everything but the `gpu` tests (slow and vllm ones included).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check harness tests benchmarks dashboard scripts
.venv/bin/python -m pytest -m "not gpu" --durations=15 "$@"
