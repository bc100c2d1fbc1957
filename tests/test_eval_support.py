"""Helpers for the eval tests (no tests here): a small real lm-eval suite built in a temp folder, and a
worker entry point that the kill-and-resume test runs in a subprocess."""

from __future__ import annotations

import hashlib
import json
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAMES = ["tom", "ana", "bob", "kim"]
THINGS = ["apples", "pears", "cats", "dogs", "books"]


def write_mc_data(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for _ in range(n):
            a, b = rng.randint(0, 40), rng.randint(0, 40)
            q = f"{rng.choice(NAMES)} has {a} {rng.choice(THINGS)} and {b} more . how many ?"
            choices = [str(a + b), str(a + b + 1), str(abs(a - b)), str(a + b + 2)]
            f.write(json.dumps({"question": q, "choices": choices, "answer": 0}) + "\n")
    return path


def mc_config(task: str, data: Path) -> dict[str, Any]:
    return {
        "task": task, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}", "doc_to_target": "{{answer}}",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1},
    }


def gen_config(task: str, data: Path) -> dict[str, Any]:
    return {
        "task": task, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "generate_until", "doc_to_text": "{{question}}",
        "doc_to_target": "{{choices[0]}}",
        "generation_kwargs": {"until": ["?", "."], "max_gen_toks": 4, "do_sample": False},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1},
    }


@dataclass
class TmpSuite:
    """Satisfies harness.evaluate.plan.SuiteLike, like harness.suites.load_suite's result."""

    name: str
    configs: dict[str, list[dict[str, Any]]]
    version: str = "1"
    default_split: str = "public"
    tiers: dict[str, int | None] = field(default_factory=lambda: {"smoke": 5, "quick": 20, "full": None})

    @property
    def splits(self) -> dict[str, list[str]]:
        return {k: [c["task"] for c in v] for k, v in self.configs.items()}

    def task_configs(self, split: str, tasks: Sequence[str] | None = None) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(c)) for c in self.configs[split] if tasks is None or c["task"] in tasks]

    def definition_hash(self, tasks: Sequence[str]) -> str:  # as Suite's: what defines the tasks is in the id
        configs = {c["task"]: c for cs in self.configs.values() for c in cs}
        return hashlib.sha256(json.dumps([configs[t] for t in tasks], sort_keys=True).encode()).hexdigest()

    def data_hash(self, split: str | None = None) -> str:  # its data is all shipped: the split adds nothing
        h = hashlib.sha256()
        for configs in self.configs.values():
            for c in configs:
                h.update(Path(c["dataset_kwargs"]["data_files"]["test"]).read_bytes())
        return h.hexdigest()


def make_suite(root: Path, n: int = 40, with_gen: bool = False, name: str = "tmp_suite") -> TmpSuite:
    mc = write_mc_data(root / "data" / "mc.jsonl", n)
    mc2 = write_mc_data(root / "data" / "mc2.jsonl", n, seed=1)
    public = [mc_config("tmp_mc", mc), mc_config("tmp_mc2", mc2)]
    if with_gen:
        public.append(gen_config("tmp_gen", mc))
    return TmpSuite(name, {"public": public, "heldout": [mc_config("tmp_mc_heldout", mc2)]})


def worker(argv: list[str]) -> None:
    """python -m tests.test_eval_support MODEL SUITE_ROOT N [BATCH [BASE_URL SERVED_NAME]]: evaluate with the
    hf backend, or the openai one against BASE_URL; prints the result as JSON, or the one-line error."""
    from harness.errors import HarnessError
    from harness.evaluate import evaluate_model
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions

    model, root, n = argv[0], Path(argv[1]), int(argv[2])
    batch = int(argv[3]) if len(argv) > 3 else 1
    base_url, served = (argv[4], argv[5]) if len(argv) > 5 else (None, None)
    suite = make_suite(root, n=n)
    bo = BackendOptions(batch_size=batch, device="cpu", dtype="float32", base_url=base_url, served_model=served,
                        max_length=256)
    opts = EvalOptions(backend="openai" if base_url else "hf", use_cache=not base_url, backend_options=bo)
    try:
        res = evaluate_model(model, suite, opts)
    except HarnessError as exc:
        print(json.dumps({"error": exc.line()}))
        sys.exit(exc.exit_code)
    print(json.dumps({"run_id": res.run_id, "cached": res.cached_requests, "new": res.new_requests}))


def make_bos_tokenizer(folder: Path) -> Path:
    """Make a tiny model's tokenizer add <s> in front of every text, as Llama's tokenizers do."""
    path = folder / "tokenizer.json"
    data = json.loads(path.read_text())
    bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    }
    path.write_text(json.dumps(data))
    return folder


if __name__ == "__main__":
    worker(sys.argv[1:])
