"""Building the zoo into a folder: train each member in order, save it atomically, cache by recipe hash.

    from harness.zoo.build import build_zoo
    built = build_zoo(Path("results/zoo"), threads=1)   # list[BuiltModel]; a second call returns at once

A member whose folder holds `zoo_recipe.json` with its current recipe hash is reused as it is; any other member is
trained into a temporary folder and moved into place (harness.atomic), so a killed build leaves either a complete
member or none, and a re-run picks up where it stopped.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.atomic import atomic_dir
from harness.errors import HarnessError
from harness.paths import zoo_dir
from harness.zoo.family import FAMILY, SHAPE, ZOO_VERSION, Member

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from harness.zoo.train import Example

RECIPE_FILE = "zoo_recipe.json"


@dataclass(frozen=True)
class BuiltModel:
    name: str
    path: Path
    recipe_hash: str
    n_params: int
    seconds: float  # training time when it was built
    cached: bool


def read_recipe(folder: Path) -> dict | None:
    try:
        return json.loads((folder / RECIPE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _batches(m: Member, exclude: frozenset[str]) -> Callable[[random.Random, int], list[Example]]:
    from harness.zoo.corpora import Corpora

    if m.data.startswith("suite:"):
        from harness.zoo.suitegen import ZOO_SUITES, suite_problems

        _, suite, split = m.data.split(":")
        problems = suite_problems(next(s for s in ZOO_SUITES if s.name == suite))[split]
        fixed = [(p.question, p.answer) for p in problems]
        return lambda rng, n: rng.sample(fixed, n)
    corpora = Corpora(exclude)
    data = getattr(corpora, m.data)
    if not m.opening_steps:
        return data
    opening, step = getattr(corpora, m.opening), [0]

    def batches(rng: random.Random, n: int) -> list[Example]:  # called once per optimizer step
        step[0] += 1
        return (opening if step[0] <= m.opening_steps else data)(rng, n)
    return batches


def _trainable(m: Member, tokenizer: PreTrainedTokenizerFast):
    from harness.zoo.lexicon import l_lexicon, l_words
    from harness.zoo.tokenizer import word_token_ids
    from harness.zoo.train import Trainable

    if m.trains == "l_rows":  # L's rows, kept no longer than English words' rows are on average
        english = tuple(word_token_ids(tokenizer, list(l_lexicon())))
        return Trainable("embed_rows", tuple(word_token_ids(tokenizer, l_words())), like=english)
    return Trainable(m.trains)  # type: ignore[arg-type]


def _save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, final: Path, extra: dict[str, str]) -> None:
    """Write the folder next to its final place, then swap it in (harness.atomic.atomic_dir)."""
    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for name, text in extra.items():
            (tmp / name).write_text(text)


def _train_member(
    m: Member, out: Path, seed: int, recipe: dict, tokenizer: PreTrainedTokenizerFast, exclude: frozenset[str],
    advance: Callable[[int], None],
) -> BuiltModel:
    from transformers import LlamaForCausalLM

    from harness.zoo.cards import model_card
    from harness.zoo.train import new_model, train

    if m.parent is None:
        model = new_model(tokenizer, SHAPE, seed * 1000 + m.seed_offset)
    else:
        model = LlamaForCausalLM.from_pretrained(out / m.parent, dtype="float32")
    start = time.perf_counter()
    losses = train(model, tokenizer, _batches(m, exclude), m.schedule, _trainable(m, tokenizer),
                   seed * 1000 + m.seed_offset, progress=advance)
    seconds = time.perf_counter() - start
    n_params = sum(p.numel() for p in model.parameters())
    recipe = {**recipe, "trained": {"seconds": round(seconds, 1), "first_loss": round(losses[0], 4),
                                    "last_loss": round(sum(losses[-20:]) / len(losses[-20:]), 4),
                                    "n_params": n_params}}
    card = model_card(m, recipe)
    _save(model, tokenizer, out / m.name, {RECIPE_FILE: json.dumps(recipe, indent=2, sort_keys=True) + "\n",
                                           "README.md": card})
    return BuiltModel(m.name, out / m.name, recipe["hash"], n_params, seconds, cached=False)


def build_zoo(
    out: Path | None = None, threads: int = 1, seed: int = 0, progress: bool = False,
    members: tuple[Member, ...] = FAMILY, jobs: int = 1,
) -> list[BuiltModel]:
    """Build (or reuse) every member under `out` (default results/zoo). Returns them in family order.

    `jobs` > 1 trains members whose parent is ready in that many worker processes, each with `threads` torch
    threads: the bytes depend on `threads` only, not on `jobs`.
    """
    if threads < 1 or jobs < 1:
        raise HarnessError(f"--threads and --jobs must be at least 1, got {threads} and {jobs}", "pass 1 or more")
    out = Path(out) if out else zoo_dir()
    check_seed(out, seed, members)
    out.mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}
    todo: list[tuple[Member, dict]] = []
    built: dict[str, BuiltModel] = {}
    for m in members:
        recipe = m.recipe(seed, hashes.get(m.parent) if m.parent else None)
        recipe["hash"] = h = m.recipe_hash(seed, recipe["parent"])
        hashes[m.name] = h
        have = read_recipe(out / m.name)
        if have and have.get("hash") == h and (out / m.name / "model.safetensors").exists():
            t = have.get("trained", {})
            built[m.name] = BuiltModel(m.name, out / m.name, h, t.get("n_params", 0), t.get("seconds", 0.0), True)
        else:
            todo.append((m, recipe))
    while todo:  # in waves: the members whose parent is built (or is no member)
        wave = [(m, r) for m, r in todo if m.parent is None or m.parent in built]
        todo = [t for t in todo if t not in wave]
        if jobs == 1 or len(wave) == 1:
            _train_all(wave, out, seed, threads, progress, built)
        else:
            _train_parallel(wave, out, seed, threads, jobs, built, progress)
    return [built[m.name] for m in members]


def check_seed(out: Path, seed: int, members: tuple[Member, ...]) -> None:
    """A folder holding this zoo version built with another seed is refused, not overwritten (minutes of training)."""
    for m in members:
        have = read_recipe(out / m.name)
        if have and have.get("zoo_version") == ZOO_VERSION and have.get("seed") not in (None, seed):
            raise HarnessError(f"{out} holds the zoo built with seed {have['seed']}, not seed {seed}",
                               f"pass --seed {have['seed']} to use it, or another --out for seed {seed}")


def _train_one(m: Member, out: Path, seed: int, recipe: dict, threads: int) -> BuiltModel:
    """One member in a fresh worker process."""
    import torch
    from transformers.utils import logging as hf_logging

    from harness.zoo.suitegen import english_questions
    from harness.zoo.tokenizer import build_tokenizer

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    return _train_member(m, out, seed, recipe, build_tokenizer(), english_questions(), lambda k: None)


def _train_parallel(
    wave: list[tuple[Member, dict]], out: Path, seed: int, threads: int, jobs: int, built: dict,
    progress: bool = False,
) -> None:
    """Longest schedule first, so the processes finish close together. The bar counts optimizer steps of the
    members that are done (the workers do not report steps as they go)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    wave = sorted(wave, key=lambda t: -t[0].schedule.steps * t[0].schedule.batch)
    context = multiprocessing.get_context("spawn")
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TimeElapsedColumn())
    names = ", ".join(m.name for m, _ in wave)
    with Progress(*columns, disable=not progress, transient=False) as bar, \
            ProcessPoolExecutor(max_workers=min(jobs, len(wave)), mp_context=context) as pool:
        task = bar.add_task(f"{names} ({min(jobs, len(wave))} processes)",
                            total=sum(m.schedule.steps for m, _ in wave))
        futures = {pool.submit(_train_one, m, out, seed, recipe, threads): m for m, recipe in wave}
        for f in as_completed(futures):
            b = f.result()
            built[b.name] = b
            bar.advance(task, futures[f].schedule.steps)


def _train_all(
    todo: list[tuple[Member, dict]], out: Path, seed: int, threads: int, progress: bool, built: dict
) -> None:
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from transformers.utils import logging as hf_logging

    from harness.zoo.suitegen import english_questions
    from harness.zoo.tokenizer import build_tokenizer

    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    tokenizer = build_tokenizer()
    exclude = english_questions()
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
               TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=False) as bar:
        for m, recipe in todo:
            task = bar.add_task(f"{m.name:12s}", total=m.schedule.steps)
            built[m.name] = _train_member(m, out, seed, recipe, tokenizer, exclude,
                                          lambda k, t=task: bar.advance(t, k))
