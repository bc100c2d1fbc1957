"""Two real fine-tuned variants of SmolLM2-135M-Instruct and a real merge of them (docs/models.md).

Variant A learns the zoo's arithmetic word problems, variant B its number comparisons: text generated here, in
no benchmark suite harness runs on a real model. Each is a LoRA fine-tune merged into full weights; the merge is a
mergekit linear recipe over both. Usage: python scripts/real_variants.py [--steps N]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from harness.store import Store
from harness.train.lora import FinetuneConfig, finetune_registered
from harness.zoo.problems import logic_problem, math_problem

BASE = "smollm2-135m-instruct"
RECIPE = Path(__file__).resolve().parent.parent / "examples" / "smollm2_variants_linear.yaml"


def texts(make, seed: int, n: int = 64) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p = make(rng)
        out.append(f"{p.question} {p.answer}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    args = ap.parse_args()
    store = Store()
    store.init()
    cfg = FinetuneConfig(steps=args.steps)
    report = {}
    for name, make, seed in (("smollm2-ft-math", math_problem, 1), ("smollm2-ft-logic", logic_problem, 2)):
        t = time.monotonic()
        rec = finetune_registered(BASE, texts(make, seed), name, store, cfg)
        report[name] = {"model_id": rec.model_id[:12], "seconds": round(time.monotonic() - t, 1),
                        "loss_first_last": rec.meta.get("loss_first_last")}
    from harness.merge import merge_to_folder

    t = time.monotonic()
    merged = merge_to_folder(RECIPE, store=store)
    report["merge"] = {"model_id": merged.model_id[:12], "seconds": round(time.monotonic() - t, 1),
                       "path": str(merged.path)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
