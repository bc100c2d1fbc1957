"""A variant of a finished dtm study: the K cluster sub-models trained K times as many epochs (so each takes about as
many steps as vanilla), averaged and evaluated on the study's suites. Prints the paired differences against the
study's vanilla. Uses the study's own data, clusters, base and store; its models go under <study>/models/.

    python benchmarks/dtm_equal_steps.py examples/dtm_zoo.yaml [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import torch

    from harness.analysis.study_table import document_scores, interval, study_cell
    from harness.evaluate.runner import evaluate_model
    from harness.identity import model_id as model_hash
    from harness.merge import merge_to_folder
    from harness.store import Store
    from harness.train.clusters import groups
    from harness.train.finetune import finetune
    from harness.train.instructions import read_instructions
    from harness.workflows.dtm import Model, merge_recipe, study_folder
    from harness.workflows.dtm_config import load_config

    cfg, _ = load_config(args.config)
    cfg = cfg.model_copy(update={"seed": args.seed})
    torch.set_num_threads(cfg.threads)
    folder, store = study_folder(cfg), Store()
    study = json.loads((folder / "study.json").read_text())
    examples = read_instructions(folder / "data.jsonl")
    labels = json.loads((folder / "clusters.json").read_text())["labels"]["kmeans"]
    base_rec = store.find_model("zoo-base")
    base = Model("base", Path(base_rec.path), base_rec.model_id)
    params = replace(cfg.params(), epochs=cfg.train.epochs * cfg.k)
    members = []
    for c, idx in enumerate(groups(labels, cfg.k)):
        res = finetune(base.path, base.model_id, [examples[i] for i in idx], params,
                       folder / "models" / f"dtm-steps-c{c}")
        print(f"dtm-steps-c{c}: {len(idx)} examples, {res.steps} steps, {res.seconds:.0f} s", file=sys.stderr)
        members.append(Model(f"c{c}", res.path, model_hash(res.path)))
    merged = merge_to_folder(merge_recipe("linear", members, base, f"{cfg.name}-s{cfg.seed}-DTM-average-equal-steps",
                                          cfg, folder / "texts.jsonl"), seed=cfg.seed, store=store)
    for suite in cfg.suites:
        name, _, split = suite.partition(":")
        mine = evaluate_model(str(merged.path), name, split=split, limit=cfg.limit, store=store, seed=cfg.seed)
        vanilla = next(r for r in study["rows"] if r["row"] == "vanilla")
        for s in mine.scores:
            if s.task == "_aggregate":
                continue
            with store.reading():
                ours = document_scores(store, mine.run_id, s.task, s.metric)
                runs = [r for r in store.list_runs() if r.suite == name and r.status == "complete"
                        and r.model_id == store.get_model(f"{cfg.name}-s{cfg.seed}-vanilla").model_id]
                ref = document_scores(store, runs[0].run_id, s.task, s.metric)
            cell = study_cell(ours, ref, (s.ci_low, s.ci_high))
            print(f"{s.task}: {interval(cell)}, vanilla "
                  f"{vanilla['cells'][f'{suite}/{s.task}/{s.metric}']['value']:.1f}, "
                  f"Δ {cell['diff']:+.1f} ± {cell['diff_ci95']:.1f}")


if __name__ == "__main__":
    main()
