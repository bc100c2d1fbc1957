"""harness dtm: fine-tuning (cached, NaN stops with its step) and the whole study on the zoo at a tiny size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.train.finetune import FinetuneParams, finetune
from harness.train.instructions import Example

EXAMPLES = [Example(f"tom has {i} apples . how many apples ?", f"{i}") for i in range(24)]


def test_finetune_learns_is_cached_and_seeded(tiny_llama, tmp_path: Path) -> None:
    base = tiny_llama("base")
    hp = FinetuneParams(epochs=3, batch=8, lr=3e-3, seed=0)
    first = finetune(base, "base-id", EXAMPLES, hp, tmp_path / "ft")
    assert not first.cached and first.steps == 9 and first.tokens > 0
    again = finetune(base, "base-id", EXAMPLES, hp, tmp_path / "ft")
    assert again.cached and again.key == first.key
    record = json.loads((tmp_path / "ft" / "finetune.json").read_text())
    assert record["params"]["lr"] == 3e-3 and record["n_examples"] == 24
    finetune(base, "base-id", EXAMPLES, hp, tmp_path / "ft2")
    weights = (tmp_path / "ft" / "model.safetensors").read_bytes()
    assert weights == (tmp_path / "ft2" / "model.safetensors").read_bytes()  # seeded: the same bytes
    assert weights != (base / "model.safetensors").read_bytes()


def test_diverging_finetune_stops_with_its_step_and_writes_nothing(tiny_llama, tmp_path: Path) -> None:
    base = tiny_llama("base")
    with pytest.raises(HarnessError, match=r"training ft diverged: the loss is (nan|inf) at step \d+ of 3"):
        finetune(base, "base-id", EXAMPLES, FinetuneParams(epochs=1, batch=8, lr=1e30), tmp_path / "ft")
    assert not (tmp_path / "ft").exists() and not list(tmp_path.glob(".ft*"))


def _config(tmp_path: Path, zoo: Path, **over) -> Path:
    cfg = {"name": "t", "base": str(zoo / "zoo-base"), "data": {"zoo": {"n": 64, "biased": 0.5}}, "k": 2,
           "train": {"epochs": 1, "batch": 16}, "soup_lrs": [1e-3, 2e-3], "curve": [0.5, 1.0],
           "merges": ["linear", "ties"], "suites": ["zoo_math:heldout"], "limit": 6, **over}
    path = tmp_path / "dtm.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_tiny_study_end_to_end(zoo_family: Path, results: Path, store, tmp_path: Path) -> None:
    from harness.workflows.dtm import run_dtm

    study = run_dtm(_config(tmp_path, zoo_family), store=store)
    labels = [r["row"] for r in study.rows]
    assert labels == ["base", "vanilla", "vanilla+L2", "uniform soup", "random clusters", "DTM average", "DTM TIES",
                      "ensemble of 2"]
    cell = study.rows[5]["cells"]["zoo_math:heldout/zoo_math_mc_heldout/acc"]
    assert cell["n"] == 6 and 0 <= cell["value"] <= 100 and "diff_ci95" in cell
    assert [r["fraction"] for r in study.curve] == [0.5, 1.0]
    assert {t["name"] for t in study.trained} >= {"dtm-c0", "dtm-c1", "random-c0", "vanilla", "soup-1", "curve-50"}
    # lineage: each sub-model is a fine-tune of the base with its slice and cluster; the average merges them
    with store.reading():
        sub = store.get_model("t-s0-dtm-c1")
        base = store.get_model(str(zoo_family / "zoo-base"))
        (edge,) = store.parents(sub.model_id)
        merge = store.get_model("t-s0-DTM-average")
        merge_parents = {e.parent_id for e in store.parents(merge.model_id)}
    assert sub.kind == "finetune" and edge.role == "finetuned_from" and edge.parent_id == base.model_id
    assert edge.params["cluster"] == 1 and len(edge.params["slice"]) == 64 and edge.params["params"]["lr"] == 1e-3
    assert sub.model_id in merge_parents and len(merge_parents) == 2
    again = run_dtm(_config(tmp_path, zoo_family), store=store)
    assert again.cached and again.rows == json.loads(json.dumps(study.rows))
    _studies_page_shows(study, merge_parents)


def _studies_page_shows(study, merge_parents: set[str]) -> None:
    """The dashboard's study page: the table, the curve, and the winner's lineage."""
    import os

    from streamlit.testing.v1 import AppTest

    os.environ["HARNESS_DASHBOARD_PREWARM"] = "0"
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/studies.py")
    at.run()
    assert not at.exception and not at.error
    winner = [s.value for s in at.subheader if s.value.startswith("The winner:")]
    assert winner and any(winner[0].startswith(f"The winner: {r['row']} ") for r in study.rows)
    assert len(at.get("graphviz_chart")) == 1 and len(at.get("vega_lite_chart")) == 1


@pytest.mark.slow
def test_study_refuses_bad_input_and_resumes(zoo_family: Path, results: Path, store, tmp_path: Path) -> None:
    from harness.workflows.dtm import run_dtm, study_folder
    from harness.workflows.dtm_config import load_config

    with pytest.raises(HarnessError, match="K=65 clusters for 64 examples"):
        run_dtm(_config(tmp_path, zoo_family, k=65), store=store)
    assert not study_folder(load_config(tmp_path / "dtm.yaml")[0]).exists()  # refused before anything is written
    with pytest.raises(HarnessError, match="zoo_mathh"):
        run_dtm(_config(tmp_path, zoo_family, suites=["zoo_mathh:heldout"]), store=store)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    with pytest.raises(HarnessError, match="bad.jsonl line 2 lacks a string 'response'"):
        run_dtm(_config(tmp_path, zoo_family, name="bad", data={"path": str(bad)}), store=store)
    # a sub-model diverges: the study stops before merging, and a re-run without --resume says how to go on
    path = _config(tmp_path, zoo_family, name="nan", train={"epochs": 1, "batch": 16, "lr": 1e30})
    with pytest.raises(HarnessError, match=r"training dtm-c0 diverged: the loss is \w+ at step \d+ of \d+"):
        run_dtm(path, store=store)
    with store.reading():
        assert not [m for m in store.list_models() if m.kind in ("merge", "finetune")]
    with pytest.raises(HarnessError, match="was started and did not finish.*pass --resume"):
        run_dtm(path, store=store)
    assert (study_folder(load_config(path)[0]) / "started.json").is_file()


@pytest.mark.slow
def test_cli_bad_config_is_one_line_exit_2(tmp_path: Path, results: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"base": "x", "data": {"zoo": {"n": 10}}, "k": 0, "suites": ["zoo_math"]}))
    out = subprocess.run([sys.executable, "-m", "harness.cli", "dtm", str(path)], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [f"error: {path}: field k: Input should be greater than or equal to 1: "
                                               "fix the config (see docs/dtm.md)"]


def test_l2_gradient_is_the_penaltys() -> None:
    import torch

    from harness.train.finetune import _add_l2_grad

    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(5))
    ref = [w.detach() + torch.randn(5)]
    (w ** 2).sum().backward()
    _add_l2_grad([w], ref, 0.3)
    w2 = torch.nn.Parameter(w.detach().clone())
    ((w2 ** 2).sum() + 0.3 * ((w2 - ref[0]) ** 2).sum()).backward()
    assert torch.allclose(w.grad, w2.grad) and not torch.allclose(w.grad, 2 * w.detach())
