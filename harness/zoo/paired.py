"""A fast in-process scorer for the zoo suites, item by item, and paired differences between two models.

    from harness.zoo.paired import compare
    rows = compare(Path("results/zoo"), "zoo-logic", "zoo-base", ("zoo_logic",))   # list[PairedRow]

Multiple choice: the option with the highest log-probability after the question and a space (every zoo option is
one token, so this is lm-eval's `acc`). Generation: the first greedy token, stripped, equals the answer (lm-eval's
exact match also needs the model to stop there, so it can be a little lower). Both models answer the same items,
so the standard error is that of the per-item differences: much smaller than the two unpaired errors combined.
`harness zoo report` is the lm-eval cross-check of the same suites.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.zoo.report import REPORT_SPLITS, ZOO_SUITE_NAMES


@dataclass(frozen=True)
class PairedRow:
    suite: str
    split: str
    form: str  # mc | gen
    n: int
    model: float  # percent
    against: float
    diff: float  # model - against, percent
    se: float  # standard error of the per-item difference, percent


def _items(suite: str, split: str, limit: int | None = None) -> list[dict]:
    from harness.suites import load_suite

    path = load_suite(suite).path / "data" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()[:limit]]


def item_scores(model_dir: Path, suite: str, split: str, limit: int | None = None) -> dict[str, list[int]]:
    """1/0 per item for both forms: {"mc": [...], "gen": [...]}."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype="float32").eval()
    out: dict[str, list[int]] = {"mc": [], "gen": []}
    with torch.no_grad():
        for item in _items(suite, split, limit):
            ctx = tok(item["question"], add_special_tokens=False)["input_ids"]
            last = model(torch.tensor([ctx])).logits[0, -1].log_softmax(-1)
            scores = []
            for choice in item["choices"]:
                ids = tok(item["question"] + " " + choice, add_special_tokens=False)["input_ids"]
                if len(ids) == len(ctx) + 1 and ids[:-1] == ctx:  # one token (every zoo option): no extra pass
                    scores.append(last[ids[-1]].item())
                    continue
                logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
                scores.append(sum(logp[j - 1, ids[j]].item() for j in range(len(ctx), len(ids))))
            out["mc"].append(int(max(range(len(scores)), key=scores.__getitem__) == item["label"]))
            out["gen"].append(int(tok.decode([int(last.argmax())]).strip() == item["answer"]))
    return out


def paired_difference(a: list[int], b: list[int]) -> tuple[float, float]:
    """Mean of a - b and its standard error, in percent."""
    from harness.stats import mean_stderr

    d = [x - y for x, y in zip(a, b, strict=True)]
    return 100 * sum(d) / len(d), 100 * mean_stderr(d)


def model_path(zoo: Path, name: str) -> Path:
    """A family member, or a reference merge (written by `harness zoo report` under <zoo>/_reference/)."""
    from harness.errors import HarnessError
    from harness.zoo.family import FAMILY
    from harness.zoo.report import REFERENCE_MERGES, reference_merges

    if name in REFERENCE_MERGES:
        return reference_merges(zoo)[name]
    members = [m.name for m in FAMILY]
    if name not in members:
        raise HarnessError(f"no zoo model named {name!r}", f"use one of {', '.join([*members, *REFERENCE_MERGES])}")
    if not (zoo / name / "model.safetensors").exists():
        raise HarnessError(f"the zoo at {zoo} lacks {name}", "run `harness zoo build` first")
    return zoo / name


def compare(zoo: Path, model: str, against: str = "zoo-base", suites: tuple[str, ...] = ZOO_SUITE_NAMES,
            splits: tuple[str, ...] = REPORT_SPLITS, limit: int | None = None) -> list[PairedRow]:
    """model vs against on every split and form of the suites, item by item (the first `limit` items of each)."""
    paths = {name: model_path(zoo, name) for name in (model, against)}
    rows = []
    for suite in suites:
        for split in splits:
            mine, theirs = (item_scores(paths[m], suite, split, limit) for m in (model, against))
            for form in ("mc", "gen"):
                a, b = mine[form], theirs[form]
                diff, se = paired_difference(a, b)
                rows.append(PairedRow(suite, split, form, len(a), 100 * sum(a) / len(a), 100 * sum(b) / len(b),
                                      diff, se))
    return rows
