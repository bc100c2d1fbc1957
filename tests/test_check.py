"""`harness baseline save` / `harness check` end to end: real models, real lm-eval runs, real baseline files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import HarnessError

REPO = Path(__file__).resolve().parent.parent


def write_tiny_suite(root: Path, version: str = "1", n: int = 40) -> Path:
    """A multiple-choice suite over 'a b c' -> pick the next word, in a folder of its own."""
    folder = root / "tiny_mc"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    words = ["tom", "ana", "bob", "kim"]
    rows = [{"question": f"{words[i % 4]} has {i % 50} apples", "choices": words, "answer": i % 4} for i in range(n)]
    (folder / "data" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/test.jsonl\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{question}} answer :'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: answer\nmetric_list:\n  - metric: acc\n"
    )
    (folder / "suite.yaml").write_text(
        f"name: tiny_mc\nversion: '{version}'\nkind: lm-eval\ndefault_split: test\nsplits:\n  test: [tiny_mc]\n"
    )
    return folder


@pytest.fixture()
def tiny_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "my_suites"
    monkeypatch.setenv("HARNESS_SUITES", str(root))
    return write_tiny_suite(root)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli.__main__", *args], capture_output=True, text=True,
                          cwd=REPO)


def test_self_check_passes_and_a_changed_suite_is_refused(tiny_llama, results, tiny_suite, store) -> None:
    model = tiny_llama("m")
    save = _cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8")
    assert save.returncode == 0, save.stderr
    doc = json.loads((results / "baselines" / "rel1.json").read_text())
    assert doc["suite"]["version"] == "1" and len(doc["tasks"]["tiny_mc"]["samples"]) == 40

    ok = _cli("check", "--candidate", str(model), "--baseline", "rel1", "--report", str(results / "r.md"), "--json")
    assert ok.returncode == 0, ok.stderr
    verdict = json.loads(ok.stdout)
    assert verdict["passed"] and verdict["tasks"][0]["diff"] == 0 and verdict["underpowered_tasks"] == ["tiny_mc"]
    assert "PASSED" in (results / "r.md").read_text()
    assert [s.process for s in store.selections()] == ["check"]  # a pass is a release selection

    write_tiny_suite(tiny_suite.parent, version="2")  # the suite changed since the baseline was saved
    refused = _cli("check", "--candidate", str(model), "--baseline", "rel1")
    assert refused.returncode == 2 and "version 1" in refused.stderr and "--allow-mismatch" in refused.stderr
    assert refused.stderr.count("\n") == 1


def test_a_failed_gate_exits_1(tiny_llama, results, tiny_suite, store) -> None:
    """The exit code is what CI reads: a FAILED gate exits 1, with or without --json. Before, `typer.Exit(1)` under
    click's standalone_mode=False was returned, not raised, and `harness check` exited 0 on a failed gate."""
    from tests.factories import run_cli

    model = tiny_llama("m")
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8")
    assert code == 0, err
    path = results / "baselines" / "rel1.json"
    doc = json.loads(path.read_text())
    task = doc["tasks"]["tiny_mc"]
    assert task["value"] < 0.6  # a random model: far below a baseline that got every item right
    task["samples"] = {k: 1.0 for k in task["samples"]}
    task["value"] = 1.0
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote")
    assert code == 1 and "FAILED" in out, (code, err)
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote", "--json")
    assert code == 1 and json.loads(out)["passed"] is False, (code, err)


def test_a_baseline_whose_documents_differ_or_that_is_broken_is_refused_in_one_line(tiny_llama, results, tiny_suite,
                                                                                      store) -> None:
    """A baseline file edited by hand, or a candidate run that scored other documents than the baseline: exit 2, one
    line, never a verdict on the documents both happen to have. Before, 5 extra baseline documents (or 10 missing)
    were dropped silently and the gate PASSED on the rest (n 40 / 30 in the report); a task without `samples` or a
    score that is not a number exited 1, the code of a failed gate, with a KeyError / ValueError."""
    from tests.factories import run_cli

    model = tiny_llama("m")
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8")
    assert code == 0, err
    good = json.loads((results / "baselines" / "rel1.json").read_text())

    def check_against(edit) -> tuple[int, str]:
        doc = json.loads(json.dumps(good))
        edit(doc["tasks"]["tiny_mc"])
        (results / "baselines" / "edited.json").write_text(json.dumps(doc))
        code, _, err = run_cli("check", "--candidate", str(model), "--baseline", "edited", "--no-promote")
        return code, err

    more = check_against(lambda t: t["samples"].update({str(40 + i): 1.0 for i in range(5)}))
    assert more[0] == 2 and more[1].count("\n") == 1 and "40 of the baseline's 45 documents" in more[1], more
    fewer = check_against(lambda t: [t["samples"].pop(str(i)) for i in range(10)])
    assert fewer[0] == 2 and fewer[1].count("\n") == 1 and "tiny_mc" in fewer[1], fewer
    for edit, words in ((lambda t: t.pop("samples"), "per-sample scores"),
                        (lambda t: t["samples"].update({"3": "right"}), "not a number")):
        code, err = check_against(edit)
        assert code == 2 and err.count("\n") == 1 and words in err and "edited.json" in err, (code, err)
    (results / "baselines" / "cut.json").write_text(json.dumps(good)[:-50])
    code, _, err = run_cli("check", "--candidate", str(model), "--baseline", "cut", "--no-promote")
    assert code == 2 and err.count("\n") == 1 and "not valid JSON" in err, (code, err)


def test_a_baseline_whose_documents_hold_other_content_is_refused(tiny_llama, results, tiny_suite, store) -> None:
    """A baseline saved from data whose documents 3 and 5 are swapped (same doc ids, other contents) whose data hash
    did not say so: the check refuses it in one line, naming document 3. Before, the baseline file held no document
    hashes and the gate paired the baseline's document 3 with the candidate's (another question) silently (exit 0).
    A baseline saved before files held hashes pairs by doc id, as before."""
    from tests.factories import run_cli

    model = tiny_llama("m")
    data = tiny_suite / "data" / "test.jsonl"
    original = data.read_text()
    rows = [json.loads(x) for x in original.splitlines()]
    swapped = [rows[{3: 5, 5: 3}.get(i, i)] for i in range(len(rows))]
    data.write_text("".join(json.dumps(r) + "\n" for r in swapped))
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "swapped", "--batch-size",
                           "8")
    assert code == 0, err
    data.write_text(original)
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8")
    assert code == 0, err
    good = json.loads((results / "baselines" / "rel1.json").read_text())["tasks"]["tiny_mc"]["doc_hashes"]
    assert good == {str(i): _doc_hash(r) for i, r in enumerate(rows)}  # lm-eval's hash of each document, by hand
    path = results / "baselines" / "swapped.json"
    doc = json.loads(path.read_text())
    hashes = doc["tasks"]["tiny_mc"]["doc_hashes"]
    assert [k for k in good if hashes[k] != good[k]] == ["3", "5"] and hashes["3"] == good["5"]
    data_hash = json.loads((results / "baselines" / "rel1.json").read_text())["suite"]["data_hash"]
    assert doc["suite"]["data_hash"] != data_hash  # refused on it today; a data hash that missed the swap:
    doc["suite"]["data_hash"] = data_hash  # only the documents can tell
    path.write_text(json.dumps(doc))
    code, _, err = run_cli("check", "--candidate", str(model), "--baseline", "swapped", "--no-promote")
    assert code == 2 and err.count("\n") == 1 and "document 3" in err and "2 of the baseline's 40" in err, (code, err)
    code, _, err = run_cli("check", "--candidate", str(model), "--baseline", "swapped", "--no-promote",
                           "--allow-mismatch")
    assert code == 0, (code, err)  # allowed: compared on doc ids, as asked
    doc["tasks"]["tiny_mc"]["doc_hashes"]["7"] = 7
    path.write_text(json.dumps(doc))
    code, _, err = run_cli("check", "--candidate", str(model), "--baseline", "swapped", "--no-promote")
    assert code == 2 and err.count("\n") == 1 and "document 7 has doc_hash 7" in err, (code, err)
    del doc["tasks"]["tiny_mc"]["doc_hashes"]  # a baseline saved before files held hashes: paired by doc id
    path.write_text(json.dumps(doc))
    code, _, err = run_cli("check", "--candidate", str(model), "--baseline", "swapped", "--no-promote")
    assert code == 0, (code, err)


def write_plain_mean_suite(root: Path, sizes: dict[str, int]) -> Path:
    """A suite of multiple-choice tasks of the given sizes whose score is the plain mean of its task means
    (`aggregate.weight_by_size: false`), in a folder of its own."""
    from tests.factories import write_mc_suite

    words = ["tom", "ana", "bob", "kim"]
    rows = {task: [{"question": f"{words[(i + k) % 4]} has {i} pears", "choices": words, "answer": (i * (k + 1)) % 4}
                   for i in range(n)] for k, (task, n) in enumerate(sizes.items())}
    return write_mc_suite(root / "plain_mc", rows, "doc_to_text: '{{question}} answer :'\ndoc_to_choice: "
                          "'{{choices}}'\ndoc_to_target: answer\n", "aggregate: {metric: acc, weight_by_size: false}\n")


def test_a_plain_mean_suite_is_gated_on_the_leaderboard_s_number(tiny_llama, results, tmp_path: Path, store,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A suite whose score is the plain mean of its task means (weight_by_size: false), tasks of 8 and 120
    documents: the gate's pooled difference is the leaderboard's candidate minus baseline, its baseline the
    baseline's suite score, its stderr the plain mean's (numpy: sqrt(sum_t var_t / n_t) / k). Before, the pooled
    test weighed every item alike: it judged the size-weighted mean, another number than the leaderboard's."""
    import numpy as np
    from scipy.stats import norm

    from tests.factories import run_cli

    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    write_plain_mean_suite(tmp_path / "suites", {"plain_small": 8, "plain_large": 120})
    base, cand = tiny_llama("base", seed=0), tiny_llama("cand", seed=5)
    code, _, err = run_cli("baseline", "save", str(base), "--suite", "plain_mc", "--name", "rel1", "--batch-size", "8")
    assert code == 0, err
    code, out, err = run_cli("check", "--candidate", str(cand), "--baseline", "rel1", "--no-promote", "--json",
                             "--tolerance", "1", "--suite-tolerance", "1")
    assert code == 0, err
    verdict = json.loads(out)
    pooled = verdict["pooled"]
    code, out, err = run_cli("leaderboard", "--json")
    assert code == 0, err
    doc = json.loads((results / "baselines" / "rel1.json").read_text())
    board = {{doc["model"]["id"]: "base", verdict["candidate"]: "cand"}[r["model_id"]]: r["value"]
             for r in json.loads(out) if r["suite"] == "plain_mc"}
    a = {t: np.array([d["samples"][k] for k in sorted(d["samples"], key=int)]) for t, d in doc["tasks"].items()}
    samples = store.samples(verdict["candidate_run"])
    b = {t: samples[(samples["task"] == t) & (samples["metric"] == "acc")].sort_values("doc_id")["score"].to_numpy()
         for t in a}
    weighted = sum(float(np.sum(b[t] - a[t])) for t in a) / sum(len(x) for x in a.values())
    se = (pooled["ci_high"] - pooled["ci_low"]) / 2 / norm.ppf(0.975)
    want_se = float(np.sqrt(sum(np.var(b[t] - a[t], ddof=1) / len(a[t]) for t in a)) / len(a))
    print(f"plain-mean suite: leaderboard {board}, pooled diff {pooled['diff']:+.4f} (item-weighted "
          f"{weighted:+.4f}), stderr {se:.5f} (numpy {want_se:.5f})")
    assert len(board) == 2 and abs(pooled["diff"] - weighted) > 1e-3  # the weighting matters to the number
    assert pooled["diff"] == pytest.approx(board["cand"] - board["base"], abs=1e-9)
    assert pooled["baseline"] == pytest.approx(board["base"], abs=1e-9)
    assert se == pytest.approx(want_se, rel=1e-9)


def test_a_baseline_saved_under_other_engines_or_harness_is_said_not_refused(tiny_llama, results, tiny_suite,
                                                                              store) -> None:
    """A baseline saved under another transformers than the candidate's run: the check still gates (an upgrade
    must not break every baseline) but says it, one report line and `engines_changed` in --json naming what
    changed. Before, backend.version was recorded and never compared: the two were compared silently. So with
    another harness version (the file's harness_version, that of the run its scores came from: before, the version
    that wrote the file, which a reused older run's scores did not come from), never compared before either."""
    from tests.factories import run_cli

    model, path, doc, now = _saved_rel1(tiny_llama, results, "transformers")
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote")
    assert code == 0 and "engines differ" not in out, (code, err)
    doc["backend"]["version"] = doc["backend"]["version"].replace(f"transformers {now}", "transformers 4.0.0")
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote", "--json")
    assert code == 0 and json.loads(out)["engines_changed"] == f"transformers 4.0.0 -> {now}", (code, out, err)
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote")
    (line,) = [x for x in out.splitlines() if "engines differ" in x]
    assert code == 0 and f"engines differ: transformers 4.0.0 -> {now}" in line, (code, out, err)
    import harness

    doc["harness_version"] = "0.0.1"  # and an older harness saved it: said too
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote", "--json")
    want = f"harness 0.0.1 -> {harness.__version__}, transformers 4.0.0 -> {now}"
    assert code == 0 and json.loads(out)["engines_changed"] == want, (code, out, err)
    doc["backend"]["version"] = doc["backend"]["version"].replace("transformers 4.0.0", f"transformers {now}")
    path.write_text(json.dumps(doc))
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote")
    (line,) = [x for x in out.splitlines() if "engines differ" in x]
    assert code == 0 and f"engines differ: harness 0.0.1 -> {harness.__version__} (baseline" in line, (code, out)
    with store.db.write() as con:  # the baseline's run was made by an older harness, and is reused by the save:
        con.execute("UPDATE runs SET harness_version = '0.0.9' WHERE run_id = ?", [doc["run_id"]])
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8",
                           "--force")
    doc = json.loads(path.read_text())
    assert code == 0 and doc["harness_version"] == "0.0.9", (code, err, doc["harness_version"])  # what made its scores
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote", "--json")
    assert code == 0 and json.loads(out)["engines_changed"] is None, (code, out, err)  # the same run: nothing moved


def _saved_rel1(tiny_llama, results: Path, package: str) -> tuple[Path, Path, dict, str]:
    """A tiny model's baseline rel1 saved: (model, its file, the file's JSON, `package`'s version, which the
    backend version it recorded names)."""
    from importlib.metadata import version

    from tests.factories import run_cli

    model = tiny_llama("m")
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8")
    assert code == 0, err
    path = results / "baselines" / "rel1.json"
    doc = json.loads(path.read_text())
    now = version(package)
    assert f"{package} {now}" in doc["backend"]["version"], doc["backend"]
    return model, path, doc, now


def _engines_said(model: Path) -> tuple[str | None, str]:
    """A check of `model` against baseline rel1: its --json `engines_changed`, and its report's "engines differ"
    line ('' when there is none)."""
    from tests.factories import run_cli

    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote", "--json")
    assert code == 0, (code, out, err)
    changed = json.loads(out)["engines_changed"]
    code, out, err = run_cli("check", "--candidate", str(model), "--baseline", "rel1", "--no-promote")
    assert code == 0, (code, out, err)
    return changed, next((x for x in out.splitlines() if "engines differ" in x), "")


def test_a_baseline_saved_under_another_lm_eval_is_said(tiny_llama, results, tiny_suite, store) -> None:
    """lm-eval builds the prompts and computes the metrics, so an upgrade of it moves scores as one of transformers
    does; a run's backend version did not name it ('transformers 5.x, torch 2.x'), and a baseline saved under
    another lm-eval was compared silently. Now the run records it and the check says it. A baseline saved before
    runs recorded it says lm-eval was not recorded (once: re-save it)."""
    model, path, doc, now = _saved_rel1(tiny_llama, results, "lm_eval")
    assert store.get_run(doc["run_id"]).backend_version == doc["backend"]["version"]
    doc["backend"]["version"] = doc["backend"]["version"].replace(f"lm_eval {now}", "lm_eval 0.4.2")
    path.write_text(json.dumps(doc))
    changed, line = _engines_said(model)
    assert changed == f"lm_eval 0.4.2 -> {now}" and f"engines differ: lm_eval 0.4.2 -> {now} (baseline -> candidate)" \
        in line, (changed, line)
    doc["backend"]["version"] = doc["backend"]["version"].replace("lm_eval 0.4.2; ", "")  # saved before it was kept
    path.write_text(json.dumps(doc))
    assert _engines_said(model)[0] == f"lm_eval (not recorded) -> {now}"


def test_the_request_cache_key_of_each_backend_is_what_it_was() -> None:
    """The request cache is keyed by engine_versions: lm-eval's version, then the backend's engines. A backend's
    version now names lm-eval itself; the key must stay the string it was, or every answer cached before is
    computed again (and evolve runs refuse to resume). Written here from the package versions alone."""
    from importlib.metadata import PackageNotFoundError, version

    from harness.evaluate.run_settings import engine_versions

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "unknown"

    lm = f"lm_eval {v('lm_eval')}; "
    assert engine_versions("hf") == f"{lm}transformers {v('transformers')}, torch {v('torch')}"
    assert engine_versions("vllm") == f"{lm}vllm {v('vllm')}"
    assert engine_versions("ensemble") == f"{lm}ensemble (mean log-probs), transformers {v('transformers')}"
    assert engine_versions("openai") == (f"{lm}lm-eval local-completions (context: the model's), "
                                         f"aiohttp {v('aiohttp')}")


def test_bad_tolerance_and_missing_baseline(results) -> None:
    from harness.cli.check_cmds import _tolerances

    assert _tolerances(["0.05", "a=0.1"]) == (0.05, {"a": 0.1})
    with pytest.raises(HarnessError, match="TASK=NUMBER"):
        _tolerances(["a=x"])
    proc = _cli("check", "--candidate", "nope", "--baseline", "missing-release", "--suite", "gsm1k")
    assert proc.returncode == 2 and "neither a baseline file" in proc.stderr


def _noisy_copy(src: Path, dst: Path, scale: float, seed: int = 0) -> Path:
    """A copy of a model with Gaussian noise (scale x each tensor's std) added to every weight matrix."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    gen = torch.Generator().manual_seed(seed)
    for f in dst.glob("*.safetensors"):
        tensors = load_file(f)
        for k, t in tensors.items():
            if t.ndim == 2:
                tensors[k] = t + scale * t.std() * torch.randn(t.shape, generator=gen)
        save_file(tensors, f, metadata={"format": "pt"})
    return dst


@pytest.mark.slow
def test_the_gate_on_the_zoo(zoo_family: Path, results: Path, store, tmp_path: Path) -> None:
    """zoo-math against itself passes; a copy damaged enough to lose its arithmetic fails and names the tasks;
    a lightly perturbed copy passes."""
    import time

    from harness.evaluate.runner import EvalOptions
    from harness.workflows.check import run_check, save_baseline

    math = zoo_family / "zoo-math"
    save_baseline(str(math), "zoo_math", "zoo-release", EvalOptions(tier="full"), store)
    start = time.perf_counter()
    same = run_check(str(math), "zoo-release", None, store, tolerance=0.05)
    print(f"gate on zoo_math full tier: {time.perf_counter() - start:.1f} s, MDE "
          + ", ".join(f"{v.task} {v.mde:.3f}" for v in same.result.verdicts))
    assert same.result.passed and all(v.diff == 0 for v in same.result.verdicts)

    broken = run_check(str(_noisy_copy(math, tmp_path / "broken", 1.0)), "zoo-release", None, store, tolerance=0.05)
    assert not broken.result.passed
    assert set(broken.result.failed_tasks) <= {"zoo_math_mc_public", "zoo_math_gen_public"}
    assert broken.result.failed_tasks and "FAIL" in broken.report
    pooled = broken.result.pooled  # zoo_math asks each question twice (multiple choice, generation): counted once
    assert pooled is not None and pooled.test == "sign-flip (pooled, by question)" and pooled.n == 2 * 300

    light = run_check(str(_noisy_copy(math, tmp_path / "light", 0.002)), "zoo-release", None, store, tolerance=0.05)
    assert light.result.passed, light.report


def test_baseline_name_is_a_name_and_an_existing_file_needs_force(tiny_llama, results, tiny_suite, store,
                                                                   tmp_path) -> None:
    """--name never writes outside results/baselines/ (a store was once replaced by JSON); nothing is written
    over without --force, and a refusal comes before any evaluation."""
    from tests.factories import run_cli

    model = tiny_llama("m")
    victim = tmp_path / "precious.duckdb"
    victim.write_bytes(b"DUCK")
    for name in (str(victim), str(tmp_path / "x"), "../escape", "sub/dir", str(victim.with_suffix(".json"))):
        code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", name,
                               "--batch-size", "8")
        assert code == 2 and "is not a name" in err, (name, err)
    assert victim.read_bytes() == b"DUCK" and not (tmp_path / "x.json").exists()
    assert not (results / "escape.json").exists() and store.list_runs(status=None) == []
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--batch-size", "8")
    assert code == 0, err
    saved = (results / "baselines" / "rel1.json").read_text()
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--limit", "3")
    assert code == 2 and "--force" in err and (results / "baselines" / "rel1.json").read_text() == saved
    code, _, err = run_cli("baseline", "save", str(model), "--suite", "tiny_mc", "--name", "rel1", "--limit", "3",
                           "--force", "--batch-size", "8")
    assert code == 0, err
    assert len(json.loads((results / "baselines" / "rel1.json").read_text())["tasks"]["tiny_mc"]["samples"]) == 3


LANGS = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")


def _doc_hash(doc: dict) -> str:
    """lm-eval's doc_hash of a document (lm_eval.evaluator: hash_string of its JSON, indent 2)."""
    from lm_eval.utils import hash_string

    return hash_string(json.dumps(doc, indent=2, ensure_ascii=False))


def _mgsm_docs() -> dict[str, list[dict]]:
    """mgsm:cot's documents as its task YAMLs read them (a TSV, no quoting, columns question and answer_number)."""
    import csv

    out = {}
    for lang in LANGS:
        with (REPO / f"suites/mgsm/data/mgsm_{lang}.tsv").open(encoding="utf-8", newline="") as f:
            rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            out[f"mgsm_8shot_cot_{lang}"] = [{"question": q, "answer_number": a} for q, a in rows]
    return out


def _gsm_plus_docs() -> dict[str, list[dict]]:
    """gsm_plus:testmini's documents: the testmini rows of each perturbation type in file order (its process_docs)."""
    out: dict[str, list[dict]] = {}
    for line in (REPO / "suites/gsm_plus/data/gsmplus_testmini.jsonl").read_text(encoding="utf-8").splitlines():
        doc = json.loads(line)
        kind = doc["perturbation_type"]
        if kind != "critical thinking":
            out.setdefault("gsm_plus_" + kind.replace(" ", "_").replace("-", "_"), []).append(doc)
    return out


def _stored_samples(store, suite: str, split: str, metric: str, docs: dict[str, list[dict]]):
    """A run of `suite`:`split` in the store, every document scored (at random), with lm-eval's doc_hash."""
    import random

    from harness.store.records import RunRecord, Sample

    rng = random.Random(suite)
    run_id = f"r-{suite}"
    store.start_run(RunRecord(run_id, "m", suite, "synthetic", "0", suite_version="2", split=split))
    store.finish_run(run_id, [], [Sample(task, i, metric, float(rng.random() < 0.5), doc_hash=_doc_hash(d))
                                  for task, ds in docs.items() for i, d in enumerate(ds)])
    return store.samples(run_id)


def test_translations_and_rewrites_of_one_problem_are_one_question_of_the_gate(store) -> None:
    """The real maps (mgsm xling, gsm8k mgsm_en and plus) name the question of each item of stored runs: mgsm:cot's
    2,750 items are 250 questions of 11 items, one per language and all of English row i's doc id; gsm_plus's 2,100
    are its 300 GSM8K seeds' 7 rewrites each, whose seed question is one text. By doc_hash alone every one of them
    was a question of its own."""
    from harness.workflows.baseline import questions, suite_metric

    docs = _mgsm_docs()
    samples = _stored_samples(store, "mgsm", "cot", suite_metric("mgsm", "cot"), docs)
    keys = questions(samples, suite_metric("mgsm", "cot"), "mgsm", "cot")
    by_key: dict[str, list[tuple[str, int]]] = {}
    for task, items in keys.items():
        for doc, key in items.items():
            by_key.setdefault(key, []).append((task, doc))
    assert len(by_key) == 250 and {len(v) for v in by_key.values()} == {11}
    assert all(len({d for _, d in v}) == 1 and len({t for t, _ in v}) == 11 for v in by_key.values())
    assert all(k.startswith("gsm8k/gsm8k_cot/") for k in by_key)
    by_hash = questions(samples, suite_metric("mgsm", "cot"))  # the gate before the maps: one question per item
    assert len({k for items in by_hash.values() for k in items.values()}) == 2750

    plus = _gsm_plus_docs()
    samples = _stored_samples(store, "gsm_plus", "testmini", suite_metric("gsm_plus", "testmini"), plus)
    keys = questions(samples, suite_metric("gsm_plus", "testmini"), "gsm_plus", "testmini")
    seed_texts: dict[str, set[str]] = {}
    for task, items in keys.items():
        for doc, key in items.items():
            seed_texts.setdefault(key, set()).add(plus[task][doc]["seed_question"])
    assert len(seed_texts) == 300 and all(len(v) == 1 for v in seed_texts.values())
    assert sum(len(items) for items in keys.values()) == 2100 and all(k.startswith("gsm8k/") for k in seed_texts)
    assert len({k for items in keys.values() for k in items.values()}) == 300


def test_a_broken_or_foreign_map_leaves_the_questions_to_the_doc_hashes(store, tmp_path: Path, caplog,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse nothing new: another suite's broken suite.yaml or broken map twinned with mgsm:cot is left out (the
    good maps still tie the languages), and a run scoring an item beyond a map (other data) keeps its doc_hash."""
    from harness.seed_questions import question_keys
    from harness.workflows.baseline import questions, suite_metric

    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "suite.yaml").write_text("name: [\n")
    (tmp_path / "mine" / "twins").mkdir(parents=True)
    (tmp_path / "mine" / "suite.yaml").write_text(
        "name: mine\nversion: 1\nkind: lm-eval\ndefault_split: a\nsplits: {a: [t]}\n"
        "twins: {x: {ref: 'mgsm:cot', relation: derived, map: twins/x.json}}\n")
    (tmp_path / "mine" / "twins" / "x.json").write_text("{not json")
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path))
    docs = {t: ds[:20] for t, ds in _mgsm_docs().items()}
    samples = _stored_samples(store, "mgsm", "cot", suite_metric("mgsm", "cot"), docs)
    keys = questions(samples, suite_metric("mgsm", "cot"), "mgsm", "cot")
    assert len({k for items in keys.values() for k in items.values()}) == 20
    assert "twin map mine:x" in caplog.text and "is not valid JSON" in caplog.text
    hashes = {(t, i): _doc_hash(d) for t, ds in docs.items() for i, d in enumerate(ds)}
    hashes[("mgsm_8shot_cot_bn", 250)] = "beyond"  # more Bengali items than the maps know: other data
    other = question_keys("mgsm", "cot", hashes)
    assert all(other[(t, 0)] == hashes[(t, 0)] for t in docs if t != "mgsm_8shot_cot_en")  # xling left out
    assert "twin map mgsm:xling knows 250 items of mgsm_8shot_cot_bn, 251 were scored" in caplog.text
    assert other[("mgsm_8shot_cot_en", 0)] == "gsm8k/gsm8k_cot/0"  # gsm8k's mgsm_en map still matches English


def test_a_twin_split_asking_each_question_twice_still_counts_it_once(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """zoo_math's shape: multiple choice and generation over the same documents, a twin split aligned per form with
    the public one. A check of the twin split follows the map to two seeds per document, which its items' shared
    doc_hash ties back into one question; the public split keeps its doc_hashes."""
    from harness.seed_questions import question_keys
    from tests.factories import write_twin_suite

    write_twin_suite(tmp_path / "zq", {f"zq_{f}_twin": f"zq_{f}_public" for f in ("mc", "gen")}, 5, "aligned")
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path))
    twin = question_keys("zq", "twin", {(f"zq_{f}_twin", i): f"t{i}" for f in ("mc", "gen") for i in range(5)})
    assert len(set(twin.values())) == 5 and all(twin[("zq_mc_twin", i)] == twin[("zq_gen_twin", i)] for i in range(5))
    assert twin[("zq_mc_twin", 0)] == "zq/zq_gen_public/0"
    public = {(f"zq_{f}_public", i): f"p{i}" for f in ("mc", "gen") for i in range(5)}
    assert question_keys("zq", "public", public) == public


def test_the_gate_refuses_the_openai_backend_in_its_own_words(tiny_llama, results, tiny_suite, store) -> None:
    # before: "the openai backend needs an endpoint: pass --base-url URL or --serve", flags that neither baseline
    # save nor check has; and check scores a candidate with a baseline file's options, which keep no endpoint
    from harness.evaluate.options import eval_options
    from harness.workflows.check import save_baseline
    from tests.factories import run_cli

    model = str(tiny_llama("m"))
    for args in (("baseline", "save", model, "--suite", "tiny_mc", "--name", "rel"),
                 ("check", "--candidate", model, "--baseline", model, "--suite", "tiny_mc")):
        code, out, err = run_cli(*args, "--backend", "openai")
        assert code == 2 and err.count("\n") == 1 and out == "", (args, code, out, err)
        assert "do not support the openai backend" in err and "--base-url" not in err, err
    opts = eval_options(backend="openai", base_url="http://127.0.0.1:9")  # a library caller with an endpoint
    with pytest.raises(HarnessError, match="do not support the openai backend"):
        save_baseline(model, "tiny_mc", "rel", opts, store)
    assert not (results / "baselines").exists() and store.list_runs(status=None) == []
