#!/usr/bin/env bash
# The main job on the embedded default: the zoo. Each step is cached, so a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
h=.venv/bin/harness
$h --help
$h db info
