"""A fuzz test of the CLI's inputs (issue 18): names, paths, numbers, YAML recipes and evolve configs, each through
the real entry point in this process. Every input ends in exit 0 or 2 (never a traceback, never exit 1), and an
exit 2 writes nothing (no file appears or changes under the results folder or beside the inputs, and the store's
rows are unchanged). Bounded: FUZZ_EXAMPLES examples per input kind (HARNESS_FUZZ_EXAMPLES overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import run_cli
from tests.test_check import write_tiny_suite

FUZZ_EXAMPLES = int(os.environ.get("HARNESS_FUZZ_EXAMPLES", "20"))
SETTINGS = settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
names = st.one_of(text, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,30}", fullmatch=True),
                  st.sampled_from(["..", ".", "../x", "/etc/passwd", "a/b", "-x", "--help", "ok-name", "x" * 200]))
numbers = st.one_of(st.integers(-10**12, 10**12).map(str), text,
                    st.sampled_from(["0", "-1", "abc", "1e9", "auto", "auto:4", "auto:0", "99999999999999999999"]))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True), text)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(text, inner, max_size=4)), max_leaves=12)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time (lock files excepted: readers touch them)."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not p.name.endswith((".lock", ".gate")):
            st_ = p.stat()
            out[str(p.relative_to(root))] = (st_.st_size, st_.st_mtime_ns)
    return out


class Harness:
    """A private results folder and store with one model, and the checks every fuzzed call must pass."""

    def __init__(self, root: Path) -> None:
        from harness.store import ModelRecord, Store

        self.root = root
        self.store = Store(root / "results" / "harness.duckdb")
        self.store.init()
        self.store.add_model(ModelRecord("a" * 64, "seed-model", None, "source"))
        self.calls = 0
        self.exit2 = 0

    def run(self, *args: str) -> int:
        before, rows = snapshot(self.root), self.store.counts()
        code, out, err = run_cli(*args)
        self.calls += 1
        assert code in (0, 2), f"harness {' '.join(map(repr, args))} -> exit {code}: {err[-800:]}"
        assert "Traceback" not in err + out, err
        if code == 2:
            self.exit2 += 1
            assert snapshot(self.root) == before, f"harness {args!r} wrote on exit 2"
            assert self.store.counts() == rows
        return code


@pytest.fixture()
def h(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    monkeypatch.setenv("HARNESS_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("HARNESS_DB", str(tmp_path / "results" / "harness.duckdb"))
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    monkeypatch.chdir(tmp_path)
    write_tiny_suite(tmp_path / "suites")
    return Harness(tmp_path)


def test_fuzz_names(h: Harness) -> None:
    @SETTINGS
    @given(name=names)
    def check(name: str) -> None:
        h.run("models", "rename", "seed-model", name)
        h.run("baseline", "save", "no-such-model", "--suite", "tiny_mc", "--name", name)
        h.run("merge", "no-such-recipe.yaml", "--name", name)

    check()
    print(f"\nfuzz names: {h.calls} calls, {h.exit2} exit 2")


def test_fuzz_paths_and_refs(h: Harness) -> None:
    @SETTINGS
    @given(path=names)
    def check(path: str) -> None:
        h.run("--db", os.path.join(str(h.root), "elsewhere", path.lstrip("/")), "leaderboard")
        h.run("lineage", path)
        h.run("eval", path, "--suite", "tiny_mc")
        h.run("evolve", path)

    check()
    print(f"\nfuzz paths: {h.calls} calls, {h.exit2} exit 2")


def test_fuzz_numbers(h: Harness) -> None:
    """On a real tiny model: a value the flag accepts runs a real (mostly cached) evaluation."""
    from tests.factories import make_tiny_llama

    model = make_tiny_llama(h.root / "models" / "tiny", hidden=64, heads=1, intermediate=128)
    eval_args = ["eval", str(model), "--suite", "tiny_mc", "--limit", "2", "--device", "cpu", "--dtype", "float32"]

    @SETTINGS
    @given(flag=st.sampled_from(["--limit", "--batch-size", "--max-length", "--seed", "--tier", "--split", "--tasks"]),
           value=numbers)
    def check(flag: str, value: str) -> None:
        h.run(*eval_args, flag, value)
        h.run("serve", "no-such-model", "--port", value)  # a valid port reaches the model lookup: exit 2
        h.run("check", "--candidate", "./none", "--baseline", "none", "--alpha", value)

    check()
    print(f"\nfuzz numbers: {h.calls} calls, {h.exit2} exit 2")


def recipe_docs() -> st.SearchStrategy:
    model = st.fixed_dictionaries({"model": st.one_of(names, st.just("seed-model")),
                                   "parameters": st.dictionaries(st.sampled_from(["weight", "density", "t"]),
                                                                 scalars, max_size=2)})
    structured = st.fixed_dictionaries(
        {"merge_method": st.one_of(st.sampled_from(["linear", "ties", "slerp", "task_arithmetic", "nope"]), text),
         "models": st.lists(model, max_size=3)},
        optional={"base_model": names, "name": names, "dtype": text, "parameters": values,
                  "tokenizer": values, "slices": values})
    return st.one_of(structured, values)


def test_fuzz_yaml_recipes(h: Harness) -> None:
    @SETTINGS
    @given(doc=recipe_docs(), raw=st.booleans(), junk=text)
    def check(doc, raw: bool, junk: str) -> None:
        path = h.root / "inputs" / "recipe.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(junk if raw else yaml.safe_dump(doc, allow_unicode=True))
        assert h.run("merge", str(path)) == 2  # no recipe here names a real model
        assert h.run("eval", str(path), "--suite", "tiny_mc") == 2

    check()
    print(f"\nfuzz recipes: {h.calls} calls, {h.exit2} exit 2")


def test_fuzz_yaml_evolve_configs(h: Harness) -> None:
    base = {"sources": ["./a", "./b"], "method": "linear", "fitness": [{"suite": "tiny_mc"}],
            "budget": {"generations": 1}, "population": 4}

    @SETTINGS
    @given(over=st.dictionaries(st.sampled_from(["sources", "method", "fitness", "budget", "population", "seed",
                                                 "parameters", "granularity", "base", "sigma", "workers",
                                                 "threads", "batch_size", "check_every", "backend", "junk"]),
                                values, max_size=4), raw=st.booleans(), junk=text)
    def check(over, raw: bool, junk: str) -> None:
        path = h.root / "inputs" / "evolve.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(junk if raw else yaml.safe_dump({**base, **over}, allow_unicode=True))
        assert h.run("evolve", str(path)) == 2  # no config here names real models

    check()
    print(f"\nfuzz evolve configs: {h.calls} calls, {h.exit2} exit 2")
