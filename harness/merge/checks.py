"""Checks before and after a merge, each ending in one-line HarnessError that names the problem and the fix.

The recipe's own checks (MergePlan.validate: a known method, keys and parameters mergekit reads, a config it
accepts) need mergekit, so a merge that passed them is remembered as checked (`check_recipe`, `checked`): a cache
hit, from the store or from the answers index, asks that instead of importing mergekit, and a merge made before a
check existed is checked on its next hit and refused as a new merge of its recipe is.

Before: weights are safetensors (pickles only with --allow-pickle), architectures agree, tensors shared by
name have one shape, tokenizers agree (unless the recipe sets mergekit's tokenizer options). After: every
merged value is finite, and the merge has a tokenizer when a parent had one. Header and JSON reads only: no
torch needed before the merge starts.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.identity import memo
from harness.weights import nonfinite, require_safe_weights

if TYPE_CHECKING:
    from harness.merge.resolve import MergePlan, Parent

VOCAB_TENSOR_HINTS = ("embed_tokens", "lm_head", "wte", "embed_out", "word_embeddings")
TOKENIZER_FIX = ("set mergekit's tokenizer option in the recipe, e.g. `tokenizer: {source: union}` "
                 "(or `source: base`), or merge models that share a tokenizer")


CHECKED_MEMO = "merge_checks"
# The recipe checks' release: bumped when a check is added that refuses a recipe an earlier release merged
# (1: unknown keys and parameter names, 73d5bf7, and parameter values mergekit refuses, 4191656).
RECIPE_CHECKS = 1


def checked(model_id: str) -> bool:
    """The recipe of merge `model_id` passed this release's recipe checks (a merge id holds its whole recipe)."""
    return memo(CHECKED_MEMO).get(model_id) == RECIPE_CHECKS


def check_recipe(plan: MergePlan) -> None:
    """The recipe's checks (plan.validate, which imports mergekit) unless this merge passed them already."""
    if checked(plan.model_id):
        return
    plan.validate()
    memo(CHECKED_MEMO, plan.model_id, RECIPE_CHECKS)


def label(p: Parent) -> str:
    return p.name or p.ref


def check_inputs(plan: MergePlan, allow_pickle: bool = False) -> None:
    parents = [p for p in plan.parents if p.role != "tokenizer"]
    for p in parents:
        check_weights_format(p, allow_pickle)
    check_architectures(parents)
    tokenizer_opts = bool(plan.config_data.get("tokenizer") or plan.config_data.get("tokenizer_source"))
    if not tokenizer_opts:
        check_tokenizers(parents)
    check_shapes(parents, skip_vocab=tokenizer_opts)


def check_weights_format(p: Parent, allow_pickle: bool) -> None:
    require_safe_weights(Path(p.path), label(p), allow_pickle)


def read_config(p: Parent) -> dict[str, Any]:
    f = Path(p.path) / "config.json"
    if not f.is_file():
        raise HarnessError(f"model {label(p)} has no config.json", "point the recipe at a Hugging Face model folder")
    return json.loads(f.read_text())


def check_architectures(parents: list[Parent]) -> None:
    archs = [(p, (read_config(p).get("architectures") or ["?"])[0]) for p in parents]
    first_p, first = archs[0]
    for p, arch in archs[1:]:
        if arch != first:
            raise HarnessError(f"architectures differ: {label(first_p)} is {first}, {label(p)} is {arch}",
                               "merge models of one architecture (mergekit's --allow-crimes is not exposed)")


def safetensors_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the safetensors headers only."""
    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        shapes.update({k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"})
    return shapes


def check_shapes(parents: list[Parent], skip_vocab: bool) -> None:
    seen: dict[str, tuple[tuple[int, ...], Parent]] = {}
    for p in parents:
        for name, shape in safetensors_shapes(Path(p.path)).items():
            if skip_vocab and any(h in name for h in VOCAB_TENSOR_HINTS):
                continue
            if name in seen and seen[name][0] != shape:
                other_shape, other = seen[name]
                raise HarnessError(
                    f"tensor shapes differ: {name} is {list(other_shape)} in {label(other)} "
                    f"but {list(shape)} in {label(p)}",
                    "merge models of the same size (same hidden, intermediate and head sizes)",
                )
            seen.setdefault(name, (shape, p))


def vocabulary(p: Parent) -> dict[int, str] | None:
    """id -> token from tokenizer.json (vocab and added tokens); None when there is no tokenizer.json."""
    f = Path(p.path) / "tokenizer.json"
    if not f.is_file():
        return None
    tj = json.loads(f.read_text(encoding="utf-8"))
    vocab = (tj.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        table = {i: v[0] for i, v in enumerate(vocab)}
    else:
        table = {i: t for t, i in vocab.items()}
    table.update({a["id"]: a["content"] for a in tj.get("added_tokens") or []})
    return table


def check_tokenizers(parents: list[Parent]) -> None:
    first = parents[0]
    ref_vocab = vocabulary(first)
    for p in parents[1:]:
        vocab = vocabulary(p)
        if ref_vocab is None or vocab is None or vocab == ref_vocab:
            continue
        diffs = [i for i in sorted(set(ref_vocab) | set(vocab)) if ref_vocab.get(i) != vocab.get(i)]
        shown = ", ".join(f"id {i}: {ref_vocab.get(i)!r} vs {vocab.get(i)!r}" for i in diffs[:3])
        raise HarnessError(
            f"tokenizers differ between {label(first)} and {label(p)} ({len(diffs)} ids; first {shown})",
            TOKENIZER_FIX,
        )


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")  # any one of them is a usable tokenizer


def check_output_tokenizer(plan: MergePlan, out: Path) -> None:
    """mergekit logs a tokenizer it failed to copy or build and carries on: a merge without one is refused here
    when a parent had one (merged weights whose ids no tokenizer reads are no model)."""
    if any((out / f).is_file() for f in TOKENIZER_FILES):
        return
    had = [label(p) for p in plan.parents if any((Path(p.path) / f).is_file() for f in TOKENIZER_FILES)]
    if had:
        donor = next((label(p) for p in plan.parents if p.role == "base"), "one of the models")
        raise HarnessError(
            f"mergekit wrote no tokenizer for this merge (it copies the tokenizer from {donor}, which has no "
            f"complete one; {', '.join(had)} has one)",
            "give that model its tokenizer files (tokenizer_config.json with tokenizer.json or tokenizer.model) "
            "or name a tokenizer source in the recipe (`tokenizer: {source: MODEL}`)")


def check_finite(tensors: Any, where: str) -> None:
    """Raise if any merged tensor holds NaN or inf. `tensors`: iterable of (name, tensor)."""
    bad = nonfinite(tensors)
    if bad is not None:
        raise HarnessError(
            f"the merge produced {bad[1]} NaN/inf values in {bad[0]} ({where})",
            "check the parents for NaN/inf weights and the recipe's weights (e.g. weights summing to 0)",
        )

