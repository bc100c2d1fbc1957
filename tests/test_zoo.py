"""The zoo: deterministic lexicon, tokenizer and suite data; vLLM-compatible shapes; a short real build (cached,
atomic, registered, same hashes twice); and, marked slow, the skill margins of the full family under lm-eval."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from harness.paths import suites_dir
from harness.zoo.family import FAMILY, SHAPE
from harness.zoo.lexicon import NAMES, all_words, l_lexicon, to_l
from harness.zoo.problems import logic_problem, math_problem, twin
from harness.zoo.suitegen import ZOO_SUITES, write_suites
from harness.zoo.train import Schedule

VLLM_CPU_HEAD_DIMS = {32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512}
ZOO_SUITE_DIR = suites_dir() / "zoo"


def test_l_is_a_fixed_word_for_word_mapping() -> None:
    lex = l_lexicon()
    assert len(set(lex.values())) == len(lex)  # one L word per English word
    assert not set(lex.values()) & set(lex) and not set(lex.values()) & set(NAMES)
    assert list(lex.items())[:3] == [("Answer", "Nara"), ("How", "Lesi"), ("What", "Migu")]
    assert to_l("Tom has 5 apples .").split()[::2] == ["Tom", "5", "."]


def test_tokenizer_is_deterministic_and_word_level_with_byte_fallback() -> None:
    from harness.zoo.tokenizer import build_tokenizer, word_token_ids

    a, b = build_tokenizer(), build_tokenizer()
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    ids = word_token_ids(a, all_words())  # raises if any zoo word splits
    assert len(set(ids)) == len(all_words())
    text = "Which is larger, 7 or 12? Réponse: 12 -> ok"
    assert a.decode(a(text)["input_ids"]).strip() == text  # any text tokenizes (bytes), nothing is <unk>
    assert a("Tom has", add_special_tokens=True)["input_ids"] == word_token_ids(a, ["Tom", "has"])  # no BOS


def test_committed_suite_files_equal_a_fresh_generation(tmp_path: Path) -> None:
    write_suites(tmp_path)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(ZOO_SUITE_DIR) for p in ZOO_SUITE_DIR.rglob("*") if p.is_file())
    assert fresh == committed
    for rel in fresh:
        assert (tmp_path / rel).read_bytes() == (ZOO_SUITE_DIR / rel).read_bytes(), rel


def test_suites_load_with_disjoint_splits_and_twins() -> None:
    from harness.suites import load_suite

    for spec in ZOO_SUITES:
        suite = load_suite(spec.name)
        assert set(suite.splits) == set(spec.splits)
        rows = {s: [json.loads(x) for x in (suite.path / "data" / f"{s}.jsonl").read_text().splitlines()]
                for s in spec.splits}
        assert all(len(r) == 300 for r in rows.values())
        public, heldout = {r["question"] for r in rows["public"]}, {r["question"] for r in rows["heldout"]}
        assert len(public) == 300 and not public & heldout
        for p, t in zip(rows["public"], rows["twin"], strict=True):
            assert p["question"] != t["question"] and len(p["question"].split()) == len(t["question"].split())
        cfgs = suite.task_configs("public")
        assert {c["output_type"] for c in cfgs} == {"multiple_choice", "generate_until"}
        assert all(Path(c["dataset_kwargs"]["data_files"]["test"]).is_absolute() for c in cfgs)


def _rows(suite: str, split: str = "public") -> list[dict]:
    return [json.loads(x) for x in (ZOO_SUITE_DIR / suite / "data" / f"{split}.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("suite", ["zoo_math", "zoo_logic"])
def test_number_distractors_defeat_shortcuts(suite: str) -> None:
    rows = _rows(suite)
    largest = sum(max(r["choices"], key=int) == r["answer"] for r in rows) / len(rows)
    smallest = sum(min(r["choices"], key=int) == r["answer"] for r in rows) / len(rows)
    first = sum(r["label"] == 0 for r in rows) / len(rows)
    assert max(largest, smallest, first) < 0.4
    for r in rows:  # every distractor is near the answer or the wrong operation's result
        assert len(set(r["choices"])) == 4 and r["answer"] in r["choices"]


def test_logic_items_ask_for_either_extreme_and_offer_the_other() -> None:
    """zoo_logic: half 'more', half 'less' (so 'the largest number of the question' scores about half), and the
    options hold the other extreme and a number near the answer that the question lacks."""
    rows = _rows("zoo_logic")
    more = [r for r in rows if " more : " in r["question"]]
    assert 0.4 < len(more) / len(rows) < 0.6
    for r in rows:
        numbers = [int(w) for w in r["question"].split(":")[1].split() if w.isdigit()]
        assert len(numbers) in (3, 4) and len(set(numbers)) == len(numbers)
        answer, other = (max(numbers), min(numbers)) if r in more else (min(numbers), max(numbers))
        assert r["answer"] == str(answer) and str(other) in r["choices"]
        assert any(int(c) not in numbers and abs(int(c) - answer) <= 5 for c in r["choices"])


@pytest.mark.parametrize("make", [math_problem, logic_problem])
def test_twin_keeps_the_story_and_changes_numbers(make) -> None:
    rng = random.Random(0)
    p = make(rng)
    t = twin(rng, p)
    assert p.meta.get("op") == t.meta.get("op") and p.meta.get("more") == t.meta.get("more")
    assert [w for w in p.question.split() if not w.isdigit()] == [w for w in t.question.split() if not w.isdigit()]


def test_zoo_base_opens_with_look_ups_about_one_person() -> None:
    """The gentler start: the first `opening_steps` batches come from the opening mixture, then the main one."""
    from harness.zoo.build import _batches
    from harness.zoo.corpora import Corpora
    from harness.zoo.family import member

    batches = _batches(replace(member("zoo-base"), opening_steps=2), frozenset())
    got = [batches(random.Random(k), 64) for k in range(3)]
    assert got == [Corpora().base_opening(random.Random(0), 64), Corpora().base_opening(random.Random(1), 64),
                   Corpora().base(random.Random(2), 64)]
    questions = [q for q, _ in got[0] + got[1] if q]
    assert len(questions) > 64 and all(len({w for w in q.split() if w in NAMES}) == 1 for q in questions)
    assert any(len({w for w in q.split() if w in NAMES}) > 1 for q, _ in got[2] if q)


def test_shape_is_one_vllm_cpu_accepts() -> None:
    assert SHAPE.head_dim in VLLM_CPU_HEAD_DIMS and SHAPE.hidden == SHAPE.heads * SHAPE.head_dim


def _short_family() -> tuple:
    """Three steps per member (zoo-base: two from its opening mixture, then one from its main one)."""
    return tuple(replace(m, schedule=Schedule(steps=3, lr=m.schedule.lr, batch=8, warmup=1),
                         opening_steps=min(m.opening_steps, 2)) for m in FAMILY)


def test_short_build_is_deterministic_cached_and_registered(tmp_path: Path, store) -> None:
    import torch

    from harness.hashing import hash_model_dir
    from harness.zoo.build import build_zoo
    from harness.zoo.register import register_zoo

    torch.set_num_threads(1)
    family = _short_family()
    first = build_zoo(tmp_path / "a", threads=1, members=family)
    second = build_zoo(tmp_path / "b", threads=1, members=family)
    assert [hash_model_dir(b.path) for b in first] == [hash_model_dir(b.path) for b in second]
    assert len({hash_model_dir(b.path) for b in first}) == len(FAMILY)  # every member differs
    again = build_zoo(tmp_path / "a", threads=1, members=family)
    assert all(b.cached for b in again) and not any(b.cached for b in first)
    folder = first[0].path
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["tie_word_embeddings"] is True
    assert config["hidden_size"] // config["num_attention_heads"] in VLLM_CPU_HEAD_DIMS
    assert (folder / "model.safetensors").exists() and not list(folder.glob("*.bin"))
    assert (folder / "chat_template.jinja").exists()
    assert not list((tmp_path / "a").glob(".*tmp*"))  # no temporary folder left behind
    ids = register_zoo(first, store)
    overfit = store.get_model("zoo-overfit")
    assert overfit.model_id == ids["zoo-overfit"] and overfit.kind == "zoo"
    assert [(s.suite, s.split, s.process) for s in store.exposure(overfit.model_id)] == [
        ("zoo_math", "public", "train")]
    assert [e.parent_id for e in store.parents(ids["zoo-math"])] == [ids["zoo-base"]]
    # the same folder asked for another seed: refused in one line, the seed-0 build left as it was
    from harness.errors import HarnessError

    before = [hash_model_dir(b.path) for b in first]
    with pytest.raises(HarnessError, match="built with seed 0, not seed 1") as err:
        build_zoo(tmp_path / "a", threads=1, seed=1, members=family)
    assert "--seed 0" in err.value.fix
    assert [hash_model_dir(b.path) for b in first] == before


def test_only_the_declared_weights_move(tmp_path: Path) -> None:
    """zoo-lang changes only L's embedding rows; zoo-math and zoo-logic only the body."""
    from safetensors.torch import load_file

    from harness.zoo.build import build_zoo
    from harness.zoo.lexicon import l_words
    from harness.zoo.tokenizer import build_tokenizer, word_token_ids

    built = {b.name: load_file(b.path / "model.safetensors") for b in
             build_zoo(tmp_path, threads=1, members=_short_family())}
    base, emb = built["zoo-base"], "model.embed_tokens.weight"
    l_rows = set(word_token_ids(build_tokenizer(), l_words()))
    changed_rows = {i for i in range(base[emb].shape[0]) if not base[emb][i].equal(built["zoo-lang"][emb][i])}
    assert changed_rows and changed_rows <= l_rows
    assert all(built["zoo-lang"][k].equal(v) for k, v in base.items() if k != emb)
    for name in ("zoo-math", "zoo-logic"):
        assert built[name][emb].equal(base[emb])
        assert any(not built[name][k].equal(v) for k, v in base.items() if k != emb)


def test_paired_difference_is_the_standard_error_of_item_differences() -> None:
    from harness.zoo.paired import paired_difference

    diff, se = paired_difference([1, 1, 0, 1], [0, 1, 0, 0])
    assert diff == 50.0 and se == pytest.approx(100 * (1 / 12) ** 0.5)
    assert paired_difference([1, 0, 1], [1, 0, 1]) == (0.0, 0.0)


def test_compare_scores_two_zoo_models_on_the_same_items(tmp_path: Path) -> None:
    from harness.errors import HarnessError
    from harness.zoo.build import build_zoo
    from harness.zoo.paired import compare

    build_zoo(tmp_path, threads=1, members=_short_family())
    rows = compare(tmp_path, "zoo-logic", "zoo-base", ("zoo_logic",), limit=12)
    assert [(r.split, r.form) for r in rows] == [(s, f) for s in ("public", "heldout", "twin") for f in ("mc", "gen")]
    assert all(r.n == 12 and r.diff == pytest.approx(r.model - r.against) for r in rows)
    same = compare(tmp_path, "zoo-base", "zoo-base", ("zoo_logic",), ("heldout",), limit=12)
    assert all(r.diff == 0 and r.se == 0 for r in same)
    with pytest.raises(HarnessError, match="zoo-logik"):
        compare(tmp_path, "zoo-logik", "zoo-base", ("zoo_logic",), limit=1)


# ---------------------------------------------------------------------- the full family (slow: CI builds it once)
def _score(zoo: Path, model: str, splits: tuple[str, ...] = ("public",), limit: int = 150) -> dict:
    from harness.zoo.report import evaluate_model, zoo_models

    path = zoo_models(zoo).get(model) or zoo / "_reference" / model
    return {(c.suite, c.split, c.form): c for c in evaluate_model(path, model, splits, limit)}


@pytest.mark.slow
def test_each_expert_beats_the_base_on_its_own_skill(zoo_family: Path) -> None:
    """By > 3 standard errors, in both forms."""
    base = _score(zoo_family, "zoo-base")
    for expert, suite in (("zoo-math", "zoo_math"), ("zoo-lang", "zoo_lang"), ("zoo-logic", "zoo_logic")):
        got = _score(zoo_family, expert)
        for form in ("mc", "gen"):
            e, b = got[(suite, "public", form)], base[(suite, "public", form)]
            assert e.value - b.value > 3 * (e.stderr**2 + b.stderr**2) ** 0.5, (expert, form, e, b)


@pytest.mark.slow
def test_overfit_model_is_far_better_on_public_than_heldout_and_twin(zoo_family: Path) -> None:
    got = _score(zoo_family, "zoo-overfit", ("public", "heldout", "twin"))
    for form in ("mc", "gen"):
        public = got[("zoo_math", "public", form)]
        for split in ("heldout", "twin"):
            other = got[("zoo_math", split, form)]
            gap, se = public.value - other.value, (public.stderr**2 + other.stderr**2) ** 0.5
            assert gap > 0.2 and gap > 3 * se, (form, split, public, other)


@pytest.mark.slow
def test_math_and_lang_merge_beats_both_sources_on_math_posed_in_l(zoo_family: Path, tmp_path: Path) -> None:
    """The cross-skill effect by design: task arithmetic of zoo-math (body) and zoo-lang (L's rows), w_math 1 and
    w_lang chosen on zoo_math_L:search, solves zoo_math_L, which neither source can; paired over the 300 heldout
    items: by generation by > 10 points and > 4 standard errors, by multiple choice (noisier) by > 2 standard
    errors."""
    from harness.zoo.crossskill import cross_skill

    res = cross_skill(zoo_family, tmp_path, grid=((1.0, 0.7), (1.0, 1.0), (1.0, 1.3)))
    floor = {"gen": (10, 4), "mc": (0, 2)}  # points, standard errors
    for source, forms in res.diff.items():
        for form, (diff, se) in forms.items():
            assert diff > floor[form][0] and diff > floor[form][1] * se, (source, form, diff, se, res.chosen)


def test_loss_weighs_each_example_the_same() -> None:
    """A one-token answer counts as much as a long story (averaged per example, then over the batch)."""
    import torch

    from harness.zoo.tokenizer import build_tokenizer
    from harness.zoo.train import encode, example_loss, new_model

    tok = build_tokenizer()
    model = new_model(tok, SHAPE, 0).eval()
    story = ("", "Tom has 5 apples . Anna has 3 pears . Tom buys 2 more apples . Anna loses 1 pears .")
    qa = ("Tom has 5 apples . What does Tom have ? Answer :", "apples")
    with torch.no_grad():
        each = [example_loss(model, encode(tok, [ex])).item() for ex in (story, qa)]
        both = example_loss(model, encode(tok, [story, qa])).item()
        pooled = model(**encode(tok, [story, qa])).loss.item()  # the token average, which favours the story
    assert both == pytest.approx(sum(each) / 2, rel=1e-5) and pooled != pytest.approx(both, rel=1e-3)
