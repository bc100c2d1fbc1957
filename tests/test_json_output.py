"""Every --json output is JSON a strict parser reads (jq, JavaScript): a missing number is null, never the NaN or
Infinity tokens Python's json writes by default (harness/cli/output.py print_json)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest


def strict(text: str) -> Any:
    """json.loads refusing NaN, Infinity and -Infinity, as RFC 8259 parsers do."""
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_print_json_writes_null_for_every_missing_or_non_finite_number(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli.output import print_json

    frame = pd.DataFrame({"task": ["a", "b"], "tasks": [3.0, np.nan], "n": pd.array([1, None], dtype="Int64")})
    print_json({"rows": frame.to_dict(orient="records"), "inf": float("inf"), "neg": -np.inf,
                "f32": np.float32("nan"), "kept": np.float32(0.5), "nat": pd.NaT, "tuple": (1.5, float("nan")),
                "int": np.int64(7)})
    got = strict(capsys.readouterr().out)
    assert got == {"rows": [{"task": "a", "tasks": 3.0, "n": 1}, {"task": "b", "tasks": None, "n": None}],
                   "inf": None, "neg": None, "f32": None, "kept": 0.5, "nat": None, "tuple": [1.5, None], "int": 7}


def test_every_json_command_on_a_real_store_is_strict_json(zoo_family, results, tmp_path) -> None:
    """A merge of zoo-math and zoo-lang and the three evaluated on zoo_math's public and heldout splits (lm-eval,
    --limit 8): each read command's --json parses strictly. `leaderboard --suite --json` wrote `"tasks": NaN` on
    every task row (12 here: 3 models x 2 splits x 2 tasks; the check failed on it) before; those are null now."""
    from tests.factories import run_cli

    recipe = tmp_path / "linear.yaml"
    recipe.write_text(f"merge_method: linear\ndtype: float32\nmodels:\n"
                      f"  - model: {zoo_family / 'zoo-math'}\n    parameters: {{weight: 0.5}}\n"
                      f"  - model: {zoo_family / 'zoo-lang'}\n    parameters: {{weight: 0.5}}\n")
    code, out, err = run_cli("merge", str(recipe), "--out", str(tmp_path / "merged"), "--json")
    assert code == 0, err[-500:]
    merged = strict(out)["model_id"]
    models = [str(zoo_family / "zoo-math"), str(zoo_family / "zoo-lang"), str(tmp_path / "merged")]
    for split in ("public", "heldout"):
        code, _, err = run_cli("eval", *models, "--suite", f"zoo_math:{split}", "--limit", "8", "--device", "cpu",
                               "--dtype", "float32")
        assert code == 0, err[-500:]
    commands = {
        "board": ["leaderboard", "--json"],
        "suite": ["leaderboard", "--suite", "zoo_math", "--json"],
        "methods": ["leaderboard", "--suite", "zoo_math", "--methods", "--chosen-on", "public", "--compared-on",
                    "heldout", "--json"],
        "overfit": ["overfit", "--json"],
        "lineage": ["lineage", merged, "--json"],
        "db": ["db", "info", "--json"],
        "models": ["models", "--json"],
        "check": ["check", "--candidate", str(tmp_path / "merged"), "--baseline", models[0], "--suite", "zoo_math",
                  "--split", "public", "--limit", "8", "--device", "cpu", "--no-promote", "--json"],
    }
    got = {}
    for name, args in commands.items():
        code, out, err = run_cli(*args)
        assert code in (0, 1), (name, code, err[-500:])  # check: 1 is a failed gate, still a verdict
        got[name] = strict(out)
    task_rows = [r for r in got["suite"] if r["task"] != "all"]
    assert len(task_rows) == 12 and all(r["tasks"] is None for r in task_rows)
    assert [r["tasks"] for r in got["suite"] if r["task"] == "all"] == [2] * 6
    assert len(got["board"]) == 6 and got["check"]["tasks"]
