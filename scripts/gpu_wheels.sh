#!/usr/bin/env bash
# Download, here, the pure-Python packages the GPU machine lacks (for Python 3.12) into .whl/ (git-ignored), so
# that a device run can carry them: run(command="bash scripts/gpu_checks.sh", carry=[".whl"]).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
pkgs="lm-eval==0.4.13 mergekit==0.1.5 duckdb datasets evaluate sqlitedict pytablewriter rouge-score word2number
      jsonlines pydantic pydantic-core immutables typer rich click shellingham cmaes dill multiprocess xxhash
      more-itertools sacrebleu portalocker colorama tabulate lxml DataProperty mbstrdecoder typepy tcolorpy
      pathvalidate chardet annotated-types typing-inspection markdown-it-py mdurl pygments absl-py nltk
      scikit-learn threadpoolctl joblib pyarrow"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl $pkgs
du -sh .whl
