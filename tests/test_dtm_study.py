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
    trained = {t["name"]: t["n_examples"] for t in study.trained}  # the control trains on k-means' sizes
    assert [trained["random-c0"], trained["random-c1"]] == [trained["dtm-c0"], trained["dtm-c1"]]
    assert study.clusters["sizes"] == {"kmeans": [trained["dtm-c0"], trained["dtm-c1"]],
                                       "random": [trained["random-c0"], trained["random-c1"]]}
    assert "cut at the k-means clusters' sizes" in study.clusters["random_control"]
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
    assert again.cached and again.rows == json.loads(json.dumps(study.rows)) and again.clusters == study.clusters
    old = json.loads((study.folder / "study.json").read_text())  # a study finished under the table of before
    old.pop("table_version")
    (study.folder / "study.json").write_text(json.dumps(old))
    remade = run_dtm(_config(tmp_path, zoo_family), store=store)  # from its cached models and runs
    assert not remade.cached and remade.rows == study.rows and all(t["cached"] for t in remade.trained)
    _average_is_the_mean_of_the_sub_models(study.folder, Path(merge.path))
    _table_is_the_stores(study, store)
    _studies_page_shows(study, merge_parents)


def _average_is_the_mean_of_the_sub_models(folder: Path, merged: Path) -> None:
    """DTM average: every tensor the numpy mean of the K sub-models' (the tied embedding once, as in each)."""
    import numpy as np
    from safetensors.numpy import load_file

    subs = [load_file(str(folder / "models" / f"dtm-c{c}" / "model.safetensors")) for c in range(2)]
    ours = {k: v for f in sorted(merged.glob("*.safetensors")) for k, v in load_file(str(f)).items()}
    assert set(ours) == set(subs[0]) and "lm_head.weight" not in ours
    assert all(np.array_equal(ours[k], np.mean([s[k] for s in subs], axis=0)) for k in ours)
    assert any(not np.array_equal(subs[0][k], subs[1][k]) for k in ours)


def _table_is_the_stores(study, store) -> None:
    """Each cell is its run's stored lm-eval score, its difference the mean of the per-document differences from
    vanilla's run (pandas, from the stored samples), and each row's suite score (frames.suite_scores, what the
    leaderboard shows) is the size-weighted mean of its cells."""
    from harness.store.frames import suite_scores
    from harness.suites import score_rules

    with store.reading():
        runs = {r.model_id: r.run_id for m in {r["model_id"] for r in study.rows} for r in store.list_runs(m)}
    boards = suite_scores(store, rules=score_rules()).set_index("run_id")["value"]
    tasks = store.leaderboard("zoo_math").set_index(["run_id", "task", "metric"])  # harness leaderboard --suite
    vanilla = store.samples(runs[study.rows[1]["model_id"]]).groupby(["task", "metric", "doc_id"])["score"].mean()
    for row in study.rows:
        run_id = runs[row["model_id"]]
        stored = {(s.task, s.metric): 100 * s.value for s in store.scores(run_id)}
        mine = store.samples(run_id).groupby(["task", "metric", "doc_id"])["score"].mean()
        for col, cell in row["cells"].items():
            _, task, metric = col.split("/")
            assert cell["value"] == pytest.approx(stored[(task, metric)]), (row["row"], col)
            board = tasks.loc[(run_id, task, metric)]
            assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((100 * board.ci_low, 100 * board.ci_high))
            diff = (mine[(task, metric)] - vanilla[(task, metric)]).dropna()
            assert cell["diff"] == pytest.approx(100 * diff.mean(), abs=1e-9), (row["row"], col)
        cells = row["cells"].values()
        weighted = sum(c["value"] * c["n"] for c in cells) / sum(c["n"] for c in cells)
        assert 100 * boards[run_id] == pytest.approx(weighted), row["row"]


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
    with pytest.raises(HarnessError, match="embedding model 'no-such-encoder' is no model folder"):
        run_dtm(_config(tmp_path, zoo_family, name="emb", embedding="no-such-encoder"), store=store)
    with pytest.raises(HarnessError, match=r"LoRA targets \['qkv'\] are no module"):
        run_dtm(_config(tmp_path, zoo_family, name="lora", train={"epochs": 1, "lora": {"targets": ["qkv"]}}),
                store=store)
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


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_lora_finetune_saves_full_weights_changed_only_where_adapted(tiny_llama, tmp_path: Path) -> None:
    """LoRA on q_proj/v_proj, merged back: an ordinary folder (no adapter tensors) whose weights differ from the
    base in the adapted projections only; its key differs from the full fine-tune's."""
    base = tiny_llama("base")
    hp = FinetuneParams(epochs=2, batch=8, lr=1e-2, seed=0, lora_rank=4, lora_targets=("q_proj", "v_proj"))
    done = finetune(base, "base-id", EXAMPLES, hp, tmp_path / "lora")
    assert not done.cached and done.key != finetune_key_full(hp)
    ours, theirs = _weights(tmp_path / "lora"), _weights(base)
    assert set(ours) == set(theirs)
    changed = {k for k in ours if not torch_equal(ours[k], theirs[k])}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in changed), sorted(changed)
    assert "LoRA (rank 4" in (tmp_path / "lora" / "README.md").read_text()


def finetune_key_full(hp: FinetuneParams) -> str:
    from dataclasses import replace

    from harness.train.finetune import finetune_key

    return finetune_key("base-id", EXAMPLES, replace(hp, lora_rank=0))


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_lora_l2_is_the_distance_of_the_merged_weights_to_the_base(tiny_llama, tmp_path: Path) -> None:
    """The LoRA penalty equals sum((W_merged - W_base)^2) after merge_and_unload, and a strong l2 keeps the
    fine-tune nearer the base than none."""
    import torch
    from transformers import AutoModelForCausalLM

    from harness.train.finetune import lora_delta_penalty, with_lora

    base = tiny_llama("base")
    hp = FinetuneParams(lora_rank=4, lora_targets=("q_proj", "v_proj", "down_proj"))
    model = with_lora(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), hp)
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_()
    penalty = float(lora_delta_penalty(model).detach())
    merged = model.merge_and_unload().state_dict()
    ref = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).state_dict()
    distance = sum(float(((merged[k] - ref[k]) ** 2).sum()) for k in ref)
    assert penalty > 0 and abs(penalty - distance) <= 1e-4 * distance

    def dist(l2: float, out: str) -> float:
        finetune(base, "base-id", EXAMPLES, FinetuneParams(epochs=2, batch=8, lr=1e-2, l2=l2, lora_rank=4,
                                                           lora_targets=("q_proj", "v_proj")), tmp_path / out)
        ours, theirs = _weights(tmp_path / out), _weights(base)
        return sum(float(((ours[k] - theirs[k]) ** 2).sum()) for k in ours)

    assert dist(10.0, "l2") < 0.5 * dist(0.0, "free")


def test_lora_finetune_is_seeded_whatever_ran_before(tiny_llama, tmp_path: Path) -> None:
    """The adapters' initial weights come from the seed: a LoRA fine-tune resumed in a fresh process (or run on a
    Ray worker) writes the bytes it writes after other fine-tunes, as its cache key promises (before: peft drew
    lora_A from whatever state the global torch generator was left in)."""
    import torch

    base = tiny_llama("base")
    hp = FinetuneParams(epochs=1, batch=8, lr=1e-2, seed=0, lora_rank=4, lora_targets=("q_proj", "v_proj"))
    for i, pre in enumerate((1, 2)):
        torch.manual_seed(pre)
        finetune(base, "base-id", EXAMPLES, hp, tmp_path / f"ft{i}")
    first, second = ((tmp_path / f"ft{i}" / "model.safetensors").read_bytes() for i in range(2))
    assert first == second


def test_a_sharded_finetune_is_cached(tiny_llama, tmp_path: Path) -> None:
    """A model saved in shards (save_pretrained shards above 50 GB: a 13B base in float32) is found again, not
    retrained on every resume."""
    import shutil

    from transformers import AutoModelForCausalLM

    from harness.train.finetune import RECORD, cached

    base = tiny_llama("base")
    hp = FinetuneParams(epochs=1, batch=8, lr=1e-3)
    done = finetune(base, "base-id", EXAMPLES, hp, tmp_path / "ft")
    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(done.path).save_pretrained(sharded, max_shard_size="200KB")
    shutil.copy(done.path / RECORD, sharded / RECORD)
    assert not (sharded / "model.safetensors").exists() and len(list(sharded.glob("model-*.safetensors"))) > 1
    hit = cached(sharded, done.key)
    assert hit is not None and hit.steps == done.steps and cached(sharded, "another-key") is None


def test_another_config_of_the_same_name_and_seed_is_refused_before_training(tiny_llama, store) -> None:
    """A study's fine-tunes are named <name>-s<seed>-<model>: when the store's model of that name is another
    fine-tune (other data or parameters), the study stops before training anything, not after every fine-tune at
    the first registration; the same fine-tune (an evaluation setting changed) passes."""
    from harness.identity import model_id as model_hash
    from harness.store import ModelRecord
    from harness.workflows.dtm import Job, Model, _check_names, _register

    folder = tiny_llama("base")
    base = Model("base", folder, model_hash(folder))
    store.add_model(ModelRecord(base.model_id, "base", str(folder), "source"))
    hp = FinetuneParams(epochs=1, batch=8, lr=1e-3)
    job = Job("dtm-c0", EXAMPLES[:8], hp, {"role": "dtm", "cluster": 0, "clustering": "kmeans"})
    done = finetune(folder, base.model_id, job.examples, hp, folder.parent / "ft")
    _register(store, "t-s0", base, job, done.path, done)
    assert store.get_model("t-s0-dtm-c0").architecture == "LlamaForCausalLM"
    _check_names(store, "t-s0", base, [job])  # the same fine-tune: fine
    for other in (Job("dtm-c0", EXAMPLES[8:16], hp, job.meta), Job("dtm-c0", job.examples, FinetuneParams(lr=2e-3),
                                                                     job.meta)):
        with pytest.raises(HarnessError, match=r"the store's model 't-s0-dtm-c0' \(\w+\) is not this study's "
                                               r"dtm-c0: another config has this name and seed: give the config "
                                               r"another name"):
            _check_names(store, "t-s0", base, [other])
    _check_names(store, "t-s1", base, [job])  # another seed: other names


def test_lora_target_that_is_no_module_is_one_line(tiny_llama, tmp_path: Path) -> None:
    hp = FinetuneParams(lora_rank=4, lora_targets=("q_proj", "qkv_proj"))
    with pytest.raises(HarnessError, match=r"LoRA targets \['qkv_proj'\] are no module of LlamaForCausalLM"):
        finetune(tiny_llama("base"), "base-id", EXAMPLES, hp, tmp_path / "ft")
    assert not (tmp_path / "ft").exists()


@pytest.mark.slow
def test_ray_workers_train_the_same_bytes_as_one_process(tiny_llama, tmp_path: Path) -> None:
    """Two Ray workers train three fine-tunes (one diverging later) to the bytes one process writes, in order;
    a worker's HarnessError comes back as its one line."""
    pytest.importorskip("ray")
    from harness.train.ray_training import TrainTask, train_all

    base = tiny_llama("base")

    def tasks(root: Path, lrs: tuple[float, ...]) -> list[TrainTask]:
        return [TrainTask(base, "base-id", EXAMPLES[i::2], FinetuneParams(epochs=1, batch=8, lr=lr, seed=i),
                          root / f"m{i}", {}) for i, lr in enumerate(lrs)]

    here = train_all(tasks(tmp_path / "one", (1e-3, 2e-3, 3e-3)))
    seen: list[int] = []
    there = train_all(tasks(tmp_path / "two", (1e-3, 2e-3, 3e-3)), workers=2, done=lambda i, t, r: seen.append(i))
    assert sorted(seen) == [0, 1, 2] and [r.path.name for r in there] == ["m0", "m1", "m2"]
    for a, b in zip(here, there, strict=True):
        assert (a.path / "model.safetensors").read_bytes() == (b.path / "model.safetensors").read_bytes()
        assert a.key == b.key and not b.cached
    with pytest.raises(HarnessError, match=r"training m1 diverged: the loss is \w+ at step \d of 2"):
        train_all(tasks(tmp_path / "bad", (1e-3, 1e30)), workers=2)
    assert not (tmp_path / "bad" / "m1").exists()


def test_a_study_cell_scores_a_document_by_the_mean_of_its_rows(store) -> None:
    """A document scored by several sample rows (repeats) counts once, at their mean, as the per-document index
    keeps it; unscored rows are left out; the cell's difference is paired by document."""
    from harness.analysis.study_table import document_scores, study_cell
    from harness.store.records import RunRecord, Sample, Score

    def write(run_id: str, rows: list[tuple[int, float | None]]) -> dict[int, float]:
        store.start_run(RunRecord(run_id, "m", "s", "synthetic", "0"))
        store.finish_run(run_id, [Score("t", "acc", 0.5, 0.1, 3)], [Sample("t", d, "acc", x) for d, x in rows])
        return document_scores(store, run_id, "t", "acc")

    mine = write("a", [(0, 1.0), (0, 0.0), (1, 1.0), (2, 0.0), (2, None)])
    assert mine == {0: 0.5, 1: 1.0, 2: 0.0}
    ref = write("b", [(0, 0.0), (1, 1.0), (2, 1.0)])
    cell = study_cell(mine, ref)
    assert cell["n"] == 3 and cell["value"] == pytest.approx(50.0)
    assert cell["diff"] == pytest.approx(100 * (0.5 + 0.0 - 1.0) / 3)


def test_a_study_cells_interval_is_wilsons_not_a_zero_half_width() -> None:
    """0 of 6 right: the table printed "0.0 ± 0.0" (value ± 1.96 stderr, a stderr of 0) where the leaderboard gives
    the run's Wilson interval [0, 39.0%]; by hand, Wilson's upper bound at p = 0 is z^2 / (n + z^2). A cell takes
    its run's stored interval where there is one."""
    from harness.analysis.study_table import format_table, study_cell

    z2 = 1.959963984540054 ** 2
    cell = study_cell(dict.fromkeys(range(6), 0.0), {})
    assert cell["value"] == 0.0 and (cell["ci_low"], cell["ci_high"]) == pytest.approx((0.0, 100 * z2 / (6 + z2)))
    assert "0.0 [0.0, 39.0]" in format_table([{"row": "base", "cells": {"s/t/acc": cell}}])
    p, n = 4 / 6, 6  # 4 of 6: Wilson's centre and half-width by hand
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), (z2 / n * (p * (1 - p) + z2 / (4 * n))) ** 0.5 / (1 + z2 / n)
    cell = study_cell({d: float(d < 4) for d in range(6)}, {})
    assert (cell["ci_low"], cell["ci_high"]) == pytest.approx((100 * (centre - half), 100 * (centre + half)))
    assert study_cell(dict.fromkeys(range(6), 0.0), {}, (0.0, 0.5))["ci_high"] == 50.0  # the run's stored one


@pytest.mark.parametrize("n", [6, 30, 300])
def test_a_paired_difference_has_the_t_interval_scipy_gives(n: int) -> None:
    """The difference against vanilla is a mean over n paired documents; its half-width was 1.96 standard errors,
    too narrow when n is small (a study's `limit`: at n = 6 the t quantile is 2.57, 31% wider). Now it is the
    t interval of the paired differences, as scipy's ttest_rel gives it, at every n (at 300 within 0.5% of the
    normal one)."""
    import numpy as np
    from scipy.stats import ttest_rel

    from harness.analysis.study_table import study_cell

    rng = np.random.default_rng(n)
    mine, ref = rng.integers(0, 2, n).astype(float), rng.integers(0, 2, n).astype(float)
    cell = study_cell(dict(enumerate(mine)), dict(enumerate(ref)))
    low, high = ttest_rel(mine, ref).confidence_interval(0.95)
    assert (cell["diff"] - cell["diff_ci95"], cell["diff"] + cell["diff_ci95"]) == pytest.approx(
        (100 * low, 100 * high), abs=1e-9)


def test_lora_variant_of_a_real_model_is_registered_with_its_own_architecture(results: Path, store,
                                                                               tmp_path: Path) -> None:
    """harness/train/lora.py (scripts/real_variants.py): a registered LoRA variant of a Mistral folder, stored as a
    MistralForCausalLM (it was written down as Llama whatever the base) with its finetuned_from edge; it imported
    resolve_model from a module that has none, so it failed before training anything."""
    from harness.train.lora import FinetuneConfig, finetune_registered
    from tests.factories import make_tiny_causal

    base = make_tiny_causal(tmp_path / "mistral", "mistral")
    cfg = FinetuneConfig(steps=2, batch_size=2, rank=2, target_modules=("q_proj", "v_proj"))
    rec = finetune_registered(str(base), ["tom has 3 apples", "the cat has 2 dogs"], "variant", store, cfg)
    with store.reading():
        (edge,) = store.parents(rec.model_id)
        parent = store.get_model(edge.parent_id)
    assert rec.architecture == "MistralForCausalLM" and edge.role == "finetuned_from"
    assert parent.path == str(base.resolve()) and rec.meta["loss_first_last"]


def test_a_finetune_learns_the_tokens_lm_eval_scores(tmp_path: Path) -> None:
    """With a byte-level BPE tokenizer (SmolLM2's, GPT-2's kind) lm-eval scores a target as the tokens of
    " 11" after the prompt ("Ġ11"); encoding prompt and response apart taught "11" after no space. The labels a
    fine-tune learns are lm-eval's continuation tokens (its own _encode_pair, target delimiter " "), then the end."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from harness.zoo.train import encode

    texts = [f"{e.prompt} {e.response}" for e in EXAMPLES] + ["Question: what is 7 + 4 ? Answer: 11"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>")
    lm = HFLM(pretrained=LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=64,
                                                      num_hidden_layers=1, num_attention_heads=1)),
              tokenizer=tok, device="cpu")
    pairs = [(e.prompt, e.response) for e in EXAMPLES[:6]] + [("Question: what is 7 + 4 ? Answer:", "11"),
                                                             ("Question: what is 7 + 4 ? Answer: ", "11")]
    batch = encode(tok, pairs)
    apart = 0
    for row, labels, (prompt, response) in zip(batch["input_ids"], batch["labels"], pairs, strict=True):
        context, continuation = lm._encode_pair(prompt, " " + response)
        learned = labels[labels != -100].tolist()
        assert learned == [*continuation, tok.eos_token_id]
        assert row[:len(context) + len(continuation)].tolist() == context + continuation
        apart += tok(response, add_special_tokens=False)["input_ids"] != continuation
    assert apart == len(pairs)  # the tokens the old encoding taught were none of these
    assert torch.equal(batch["attention_mask"].sum(1), torch.tensor([len(c) + len(t) + 1 for c, t in
                                                                     (lm._encode_pair(p, " " + r) for p, r in pairs)]))
