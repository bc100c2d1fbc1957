"""Builders for the evolve tests: a tiny local suite in the factories' vocabulary, and evolve configs over tiny
real Llama models. (Helpers, plus one test that the suite they build is a valid suite.)"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

NAMES = ("tom", "ana", "bob", "kim")
THINGS = ("apples", "pears", "cats", "dogs", "books")


def _item(rng: random.Random, i: int) -> dict[str, Any]:
    a, b = rng.randrange(1, 40), rng.randrange(1, 40)
    who, what = rng.choice(NAMES), rng.choice(THINGS)
    c = a + b
    choices = [str(c), str(c + 1), str(c - 1), str(c + 2)]
    order = list(range(4))
    rng.shuffle(order)
    return {"id": i, "question": f"{who} has {a} {what} and {b} more {what} . how many {what} ? answer :",
            "answer": str(c), "choices": [choices[k] for k in order], "label": order.index(0)}


TASK = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/{split}.jsonl
test_split: test
doc_to_text: "{{{{question}}}}"
target_delimiter: " "
output_type: multiple_choice
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
"""


def make_suite(root: Path, name: str = "tiny_sum", sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A suite folder `root/name` with one multiple-choice task per split (search, heldout, public)."""
    sizes = sizes or {"search": 12, "heldout": 40, "public": 12}
    folder = root / name
    (folder / "data").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    splits = {}
    for split, n in sizes.items():
        rows = [_item(rng, i) for i in range(n)]
        (folder / "data" / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        task = f"{name}_mc_{split}"
        (folder / f"{task}.yaml").write_text(TASK.format(task=task, split=split))
        splits[split] = [task]
    default = "public" if "public" in splits else next(iter(splits))
    lines = [f"name: {name}", 'version: "1"', "kind: lm-eval", "description: Tiny sums for evolve tests.",
             f"default_split: {default}", "splits:"] + [f"  {s}: [{', '.join(t)}]" for s, t in splits.items()]
    lines += ["tiers:", "  smoke: 4", "  quick: 8", "  full: null"]
    (folder / "suite.yaml").write_text("\n".join(lines) + "\n")
    (folder / "README.md").write_text(f"# {name}\n\nTiny generated sums for tests (license: Apache-2.0).\n")
    return folder


def make_models(tmp: Path, n_sources: int = 2, layers: int = 2, tie: bool = False) -> tuple[Path, list[Path]]:
    """A base and n sources: tiny random Llamas of one shape (sources = base + a random perturbation)."""
    import torch
    from safetensors.torch import load_file, save_file

    from tests.factories import make_tiny_llama

    base = make_tiny_llama(tmp / "base", seed=0, layers=layers, tie=tie)
    sources = []
    for k in range(n_sources):
        src = make_tiny_llama(tmp / f"src{k}", seed=0, layers=layers, tie=tie)
        sd = load_file(str(src / "model.safetensors"))
        g = torch.Generator().manual_seed(100 + k)
        sd = {n: (t + 0.05 * torch.randn(t.shape, generator=g)).contiguous() for n, t in sd.items()}
        save_file(sd, str(src / "model.safetensors"), metadata={"format": "pt"})
        sources.append(src)
    return base, sources


def make_config(tmp: Path, base: Path, sources: list[Path], **over: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "base": str(base), "sources": [str(s) for s in sources], "method": "task_arithmetic",
        "parameters": {"weight": {"low": 0.0, "high": 1.0}},
        "granularity": "layer_groups", "layer_groups": 2,
        "fitness": [{"suite": "tiny_sum"}], "suites_dir": str(tmp / "suites"),
        "search_split": "search", "heldout_split": "heldout",
        "population": 4, "budget": {"generations": 2}, "seed": 3, "backend": "hf", "check_every": 1,
        "threads": 1, "batch_size": 16,
    }
    cfg.update(over)
    return cfg


def test_tiny_suite_loads(tmp_path: Path) -> None:
    from harness.suites import load_suite

    make_suite(tmp_path)
    suite = load_suite("tiny_sum", tmp_path)
    assert suite.splits["search"] == ("tiny_sum_mc_search",)
    configs = suite.task_configs("heldout")
    assert Path(configs[0]["dataset_kwargs"]["data_files"]["test"]).is_file()
