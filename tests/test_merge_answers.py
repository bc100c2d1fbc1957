"""`harness merge` of a merge that is already complete, answered from the answers index (harness/cli/answers.py)
without importing typer, duckdb, pydantic, yaml, torch or mergekit: the same output as the store's cached path,
and a fall-through to that path whenever something changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_merge import recipes, write_recipe, zoo  # noqa: F401 (fixture)

HEAVY = ("typer", "click", "duckdb", "pydantic", "yaml", "torch", "mergekit", "transformers")


def harness_merge(*args: str) -> tuple[str, set[str]]:
    """`harness merge ARGS` in a child process under `python -X importtime`: (stdout, the modules it imported)."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "harness.cli", "merge", *args],
                         capture_output=True, text=True, env=os.environ.copy(), check=True)
    modules = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    return out.stdout, modules


def answers_file(results: Path) -> Path:
    return results / "cache" / "merge_answers.json"


def test_second_merge_is_answered_without_heavy_imports_and_says_the_same(zoo, results, tmp_path):  # noqa: F811
    path = str(write_recipe(tmp_path, "lin", recipes(zoo)["linear"]))
    cold, _ = harness_merge(path, "--seed", "0")
    assert "merged in" in cold
    for flags in ((), ("--json",)):
        answers_file(results).unlink()  # the store's cached path answers (and remembers again)
        from_store, store_modules = harness_merge(path, *flags)
        assert "duckdb" in store_modules and "typer" in store_modules
        assert not {m for m in store_modules if m.split(".")[0] in ("torch", "mergekit")}  # checked when made
        fast, fast_modules = harness_merge(path, *flags)
        assert not {m for m in fast_modules if m.split(".")[0] in HEAVY}, sorted(fast_modules)
        if flags:
            a, b = json.loads(from_store), json.loads(fast)
            assert a.pop("seconds") >= 0 and b.pop("seconds") >= 0
            assert a == b and a["cached"] is True and Path(a["path"]).is_dir()
            assert [x for x in from_store.splitlines() if '"seconds"' not in x] == \
                [x for x in fast.splitlines() if '"seconds"' not in x]
        else:
            assert fast == from_store and " cached: " in fast and fast.count("  source ") == 2


def test_anything_changed_falls_through_to_the_store(zoo, results, tmp_path, capsys):  # noqa: F811
    from harness.cli.answers import answer_merge
    from tests.factories import run_cli

    recipe = str(write_recipe(tmp_path, "lin", recipes(zoo)["linear"]))
    code, cold, _ = run_cli("merge", recipe)
    assert code == 0 and "merged in" in cold
    assert answer_merge(["merge", recipe])
    first = capsys.readouterr().out
    assert first == cold.replace(cold.split(": ")[0].split(" ", 1)[1], "cached")
    for argv in (["merge", recipe, "--device", "cpu"], ["merge", recipe, "--db", str(results / "harness.duckdb")],
                 ["merge", recipe, "--seed", "1"], ["merge", recipe, "--out"], ["merge", recipe, recipe],
                 ["eval", recipe], ["merge", recipe, "--name", "x"]):
        assert not answer_merge(argv), argv
    assert answer_merge(["merge", recipe, "--json", "--seed=0"])  # the same answer, other spellings
    capsys.readouterr()

    parent = zoo["m1"] / "config.json"  # a parent touched (same bytes: the store's path finds the same merge)
    os.utime(parent, ns=(parent.stat().st_atime_ns, parent.stat().st_mtime_ns + 10**9))
    assert not answer_merge(["merge", recipe]) and capsys.readouterr().out == ""
    assert run_cli("merge", recipe)[1] == first  # answered by the store, remembered again
    assert answer_merge(["merge", recipe]) and capsys.readouterr().out == first

    from harness.merge.record import record_selection
    from harness.store import Store

    record_selection(Store(), json.loads(run_cli("merge", recipe, "--json")[1])["model_id"], "gsm8k:public")
    assert not answer_merge(["merge", recipe])  # the store was written since: it is asked again
    assert run_cli("merge", recipe)[1] == first and answer_merge(["merge", recipe])
    capsys.readouterr()

    folder = Path(first.split(": ", 1)[1].splitlines()[0])
    folder.rename(tmp_path / "moved")
    assert not answer_merge(["merge", recipe])
    assert "merged in" in run_cli("merge", recipe)[1]  # made again
    Path(recipe).write_text(Path(recipe).read_text() + "\n# another text, another key\n")
    assert not answer_merge(["merge", recipe])


def test_answers_hang_only_on_fingerprinted_inputs(zoo, results, tmp_path):  # noqa: F811
    """A merge of merges, or one naming a file in its parameters, depends on files the index does not fingerprint:
    such answers are never remembered (a changed sub-recipe must be merged again)."""
    import shutil

    from harness.merge import load_recipe, plan_merge
    from harness.merge.engine import self_contained
    from harness.merge.resolve import Resolver

    sub = write_recipe(tmp_path, "sub", recipes(zoo)["linear"])
    top = write_recipe(tmp_path, "top", {"merge_method": "linear", "models": [
        {"model": "sub.yaml", "parameters": {"weight": 0.5}},
        {"model": str(zoo["m2"]), "parameters": {"weight": 0.5}}]})
    shutil.copy(zoo["m0"] / "model.safetensors", tmp_path / "extra.safetensors")
    with_file = recipes(zoo)["linear"]
    with_file["models"][0]["parameters"]["mask"] = "extra.safetensors"
    with_file = write_recipe(tmp_path, "with_file", with_file)
    made_before = Resolver(materialize=lambda path: (str(zoo["m1"]), "0" * 64))  # the sub-merge's folder and id
    assert self_contained(plan_merge(load_recipe(sub), Resolver()))
    assert not self_contained(plan_merge(load_recipe(top), made_before))
    assert not self_contained(plan_merge(load_recipe(with_file), Resolver()))


def test_an_answer_is_not_given_under_another_torch_or_mergekit(zoo, results, tmp_path, monkeypatch, capsys):  # noqa: F811
    """A merge id holds mergekit's version, and torch's for a method that draws: an upgrade makes another id, so the
    remembered answer (the id made under the old release) must not be printed. Another release is simulated the
    way one is found: a site folder ahead on sys.path holding the package and its dist-info."""
    from harness.cli.answers import answer_merge
    from tests.factories import run_cli

    recipe = str(write_recipe(tmp_path, "dare", recipes(zoo)["dare_ties"]))
    assert run_cli("merge", recipe)[0] == 0
    assert answer_merge(["merge", recipe])
    for package, release in (("torch", "0.0.1"), ("mergekit", "0.0.1")):
        site = tmp_path / f"site-{package}"
        (site / package).mkdir(parents=True)
        (site / f"{package}-{release}.dist-info").mkdir()
        with monkeypatch.context() as m:
            m.syspath_prepend(str(site))
            assert not answer_merge(["merge", recipe]), f"answered under {package} {release}"
    assert answer_merge(["merge", recipe])  # the installed releases again: answered
    capsys.readouterr()


def merge_as_before_keys_were_checked(recipe: Path) -> dict:
    """What `harness merge RECIPE` did before recipe keys were checked (73d5bf7), with the library's own writers:
    the merge made by mergekit, recorded in the store and its answer remembered, no check of the recipe's keys."""
    from harness.cli.answers import remember_merge
    from harness.merge import load_recipe, plan_merge
    from harness.merge.cards import write_card
    from harness.merge.engine import MergeResult, merges_dir, run_mergekit, staging
    from harness.merge.record import record_merge
    from harness.merge.resolve import Resolver
    from harness.store import Store

    store = Store()
    store.init()
    plan = plan_merge(load_recipe(recipe), Resolver(store=store))
    final = merges_dir() / plan.model_id
    with staging(final) as tmp:
        run_mergekit(plan, tmp, device="cpu", allow_pickle=False)
        write_card(tmp, plan, recipe.stem)
    record_merge(store, plan, final, recipe.stem)
    answer = MergeResult(plan.model_id, final, plan.parents, plan.recipe_id, False, 1.0, True).as_json()
    remember_merge(str(recipe), None, 0, answer, {p.path: p.files_sig for p in plan.parents})
    return answer


def test_a_typo_merged_before_keys_were_checked_is_refused_not_answered(zoo, results, tmp_path, monkeypatch):  # noqa: F811
    # before: a recipe with `densty: 0.2` merged by a release without the key check was answered "cached", exit 0,
    # by the answers index and by the store alike; a fresh merge of the same recipe is refused (exit 2)
    from harness.cli.answers import answer_merge
    from harness.store import Store
    from tests.factories import run_cli

    typo = recipes(zoo)["ties"]
    typo["models"][0]["parameters"] = {"weight": 0.5, "densty": 0.2}
    recipe = write_recipe(tmp_path, "typo", typo)
    old = merge_as_before_keys_were_checked(recipe)
    rows = [(m.model_id, m.name) for m in Store().list_models(kind="merge")]
    assert rows == [(old["model_id"], "typo")]
    remembered = answers_file(results).read_bytes()

    for path in ("answers index", "store"):
        if path == "store":
            answers_file(results).unlink()
        assert not answer_merge(["merge", str(recipe)]), path
        code, out, err = run_cli("merge", str(recipe))
        assert code == 2 and out == "" and err.count("\n") == 1, (path, code, out, err)
        assert "'densty' (did you mean 'density'?)" in err and "Traceback" not in err, (path, err)
        assert [(m.model_id, m.name) for m in Store().list_models(kind="merge")] == rows, path
        if path == "answers index":
            assert answers_file(results).read_bytes() == remembered  # nothing remembered again
    assert not answers_file(results).exists()

    fresh = tmp_path / "fresh"  # the same recipe in a store that never saw it: the same one line
    monkeypatch.setenv("HARNESS_RESULTS", str(fresh))
    monkeypatch.setenv("HARNESS_DB", str(fresh / "harness.duckdb"))
    assert run_cli("merge", str(recipe)) == (2, "", err)
