"""A zoo dtm study's zoo_math scores split into additions and subtractions: where the biased slice (additions only)
shows. Reads the study's study.json and the store's per-document rows; runs nothing.

    python benchmarks/dtm_add_sub.py results/dtm/dtm-zoo-<hash> [--db results/harness.duckdb]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TASKS = (("zoo_math_gen_heldout", "exact_match,strip"), ("zoo_math_mc_heldout", "acc"))


def model_name(study: dict, label: str) -> str:
    """The store name harness dtm gave a row's model (study.json from before rows carried model ids)."""
    prefix = f"{study['config']['name']}-s{study['config']['seed']}"
    fixed = {"vanilla": "vanilla", "vanilla+L2": "vanilla-l2", "vanilla 100%": "vanilla"}
    if label in fixed:
        return f"{prefix}-{fixed[label]}"
    if label.startswith("vanilla "):
        return f"{prefix}-curve-{label.split()[1].rstrip('%')}"
    return f"{prefix}-{label.replace(' ', '-')}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--db")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from harness.store import Store

    study = json.loads((Path(args.study) / "study.json").read_text())
    store = Store(args.db) if args.db else Store()
    items = [json.loads(line) for line in (REPO / "suites/zoo/zoo_math/data/heldout.jsonl").read_text().splitlines()]
    is_add = [" more " in it["question"] for it in items]  # a story says "gets 3 more" only for a gain
    forms = [t.split("_")[2] for t, _ in TASKS]
    print(f"{'recipe':<18}" + "".join(f"{f + ' add':>10}{f + ' sub':>10}" for f in forms))
    with store.reading():
        runs = [r for r in store.list_runs() if r.suite == "zoo_math" and r.status == "complete"]
        for row in study["rows"] + study["curve"]:
            ref = row.get("model_id") or ("zoo-base" if row["row"] == "base" else model_name(study, row["row"]))
            if row["row"].startswith("ensemble") and not row.get("model_id"):  # found by its folder
                ref = str(next(Path(args.study).resolve().glob("*ensemble")))
            found = store.find_model(ref)
            mine = [r for r in runs if found and r.model_id == found.model_id]
            if not mine:
                print(f"{row['row']:<18} (not found in this store)")
                continue
            cells = []
            for task, metric in TASKS:
                df = store.samples(mine[0].run_id, task)
                score = dict(zip(df[df.metric == metric].doc_id, df[df.metric == metric].score, strict=True))
                for want in (True, False):
                    vals = [score[i] for i in score if is_add[i] == want]
                    cells.append(f"{100 * sum(vals) / len(vals):>10.0f}")
            print(f"{row['row']:<18}" + "".join(cells))


if __name__ == "__main__":
    main()
