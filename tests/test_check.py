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
