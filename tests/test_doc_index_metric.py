"""The per-document index is read on the metric the suite score reads (harness/store/doc_index.py chosen_sql).

gsm8k, gsm1k and gsm_plus log `exact_match,strict-match` and `exact_match,flexible-extract` per document (lm-eval's
two filters) and are scored on strict-match (suite.yaml aggregate.metric); mgsm on `exact_match,last-number`, its
lm_eval_native_cot split on strict-match (split_metrics). The index of one metric picked without the rule held the
alphabetically first, flexible-extract: the twin pairing and the dashboard's paired comparison then compared other
numbers than the suite scores shown. Every figure here is checked against pandas over the sample rows.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from harness.store import RunRecord, Sample, Score, Store
from harness.store import frames as views
from harness.store.twin_pairs import mapped_diffs
from harness.suites import score_rules

STRICT, FLEX = "exact_match,strict-match", "exact_match,flexible-extract"
DOCS = 40


def _write(store: Store, run: str, suite: str, split: str | None, tasks: dict[str, tuple[str, ...]],
           seed: int) -> pd.DataFrame:
    """A run whose documents score differently per filter (a model that often misses the strict answer format:
    flexible-extract finds the number, strict-match does not), its task rows each metric's mean as lm-eval makes
    them; returns its sample rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for task, metrics in tasks.items():
        right = rng.random(DOCS) < 0.6
        strict_format = rng.random(DOCS) < 0.5
        for d in range(DOCS):
            for m in metrics:
                strictish = m != FLEX and m != "exact_match,last-number"
                score = float(right[d] and (strict_format[d] or not strictish))
                rows.append(Sample(task, d, m, score, doc_hash=f"{task}-{d}"))
    frame = pd.DataFrame([(s.task, s.doc_id, s.metric, s.score) for s in rows],
                         columns=["task", "doc_id", "metric", "score"])
    means = frame.groupby(["task", "metric"])["score"].agg(["mean", "count"])
    scores = [Score(t, m, float(v), 0.05, int(n)) for (t, m), (v, n) in means.iterrows()]
    store.start_run(RunRecord(run, f"model-{run}", suite, "hf", "test", split=split))
    store.finish_run(run, scores, rows)
    return frame.assign(run_id=run)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    path = tmp_path_factory.mktemp("doc_metric") / "s.duckdb"
    store = Store(path)
    frames = [
        _write(store, "gsm8k", "gsm8k", "test", {"gsm8k_cot": (STRICT, FLEX)}, 1),
        _write(store, "plus", "gsm_plus", "testmini", {"gsm_plus_critical_thinking": (STRICT, FLEX)}, 2),
        _write(store, "mgsm-default", "mgsm", None, {"mgsm_de": (STRICT, "exact_match,last-number")}, 3),
        _write(store, "mgsm-cot", "mgsm", "lm_eval_native_cot", {"mgsm_de": (STRICT, "exact_match,last-number")}, 4),
        _write(store, "mmlu", "mmlu", "test", {"mmlu_anatomy": ("acc", "acc_norm")}, 5),
    ]
    return path, pd.concat(frames, ignore_index=True)


# The metric each run's suite score reads, by hand from the suites' suite.yaml files.
WANT = {"gsm8k": STRICT, "plus": STRICT, "mgsm-default": "exact_match,last-number", "mgsm-cot": STRICT,
        "mmlu": "acc"}


def test_the_filters_differ_on_these_rows(written: tuple[Path, pd.DataFrame]) -> None:
    """The premise: strict-match and flexible-extract give other task means (else nothing here could fail)."""
    _, samples = written
    means = samples[samples["run_id"] == "gsm8k"].groupby("metric")["score"].mean()
    assert abs(means[STRICT] - means[FLEX]) > 0.1


def test_doc_scores_average_to_the_suite_score(written: tuple[Path, pd.DataFrame]) -> None:
    """views.doc_scores (the dashboard's paired comparison) averages, per run, to the suite score shown, and equals
    pandas' per-document mean of the sample rows on the suite's metric."""
    path, samples = written
    store, rules = Store(path), score_rules()
    docs = views.doc_scores(store, sorted(WANT), rules)
    suite = views.suite_scores(store, rules=rules).set_index("run_id")
    for run, metric in WANT.items():
        got = docs[docs["run_id"] == run].set_index(["task", "doc_id"])["score"].sort_index()
        rows = samples[(samples["run_id"] == run) & (samples["metric"] == metric)]
        want = rows.groupby(["task", "doc_id"])["score"].mean().sort_index()
        assert got.to_numpy().tolist() == want.to_numpy().tolist(), run
        assert suite.loc[run, "metric"] == metric
        assert got.mean() == pytest.approx(suite.loc[run, "value"], abs=1e-12), run


def test_twin_pairing_reads_the_suite_metric(written: tuple[Path, pd.DataFrame]) -> None:
    """The twin pairing of gsm8k against gsm_plus (each gsm_plus item against its seed) on strict-match: the means
    and the difference pandas gives over the strict-match rows."""
    path, samples = written
    maps = pd.DataFrame({"map_key": "k", "twin_task": "gsm_plus_critical_thinking", "twin_doc": range(DOCS),
                         "public_task": "gsm8k_cot", "public_doc": [d // 2 for d in range(DOCS)]})
    pairs = pd.DataFrame({"pid": [0], "run_a": ["gsm8k"], "run_b": ["plus"], "map_key": ["k"]})
    tasks = pd.DataFrame({"map_key": ["k"], "twin_task": ["gsm_plus_critical_thinking"]})
    got = mapped_diffs(Store(path), pairs, maps, tasks, score_rules()).iloc[0]
    strict = samples[samples["metric"] == STRICT].set_index(["run_id", "doc_id"])["score"]
    a = strict.loc["gsm8k"].reindex(maps["public_doc"]).to_numpy()
    b = strict.loc["plus"].reindex(maps["twin_doc"]).to_numpy()
    assert got["n"] == DOCS and got["clusters"] == DOCS // 2
    assert got["mean_a"] == pytest.approx(a.mean(), abs=1e-12)
    assert got["mean_b"] == pytest.approx(b.mean(), abs=1e-12)
    assert got["diff"] == pytest.approx((a - b).mean(), abs=1e-12)
    assert got["mean_b_all"] == pytest.approx(strict.loc["plus"].mean(), abs=1e-12)


def test_migration_rebuilds_an_index_of_one_metric(written: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """A store whose index v4 wrote (one metric per task: the first by rank, else the alphabetically first, here
    flexible-extract) is rebuilt on open: its paired scores are the strict-match ones after."""
    path, samples = written
    old = tmp_path / "v7.duckdb"
    old.write_bytes(path.read_bytes())
    con = duckdb.connect(str(old))
    con.execute("DELETE FROM doc_scores WHERE rt IN (SELECT rt FROM run_tasks WHERE metric NOT IN "
                "('exact_match,flexible-extract', 'exact_match,last-number', 'acc'))")  # what v4 kept
    con.execute("DELETE FROM run_tasks WHERE metric NOT IN "
                "('exact_match,flexible-extract', 'exact_match,last-number', 'acc')")
    con.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
    con.close()
    docs = views.doc_scores(Store(old), ["gsm8k"], score_rules())
    strict = samples[(samples["run_id"] == "gsm8k") & (samples["metric"] == STRICT)]
    assert docs["score"].tolist() == strict.sort_values("doc_id")["score"].tolist()


TWO_FILTER_TASK = r"""task: zoo_math_2f_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: data/public.jsonl
test_split: test
doc_to_text: "{{question}}"
target_delimiter: " "
output_type: generate_until
doc_to_target: answer
generation_kwargs:
  until: ["\n"]
  max_gen_toks: 4
  do_sample: false
filter_list:
  - name: strict
    filter:
      - function: regex
        regex_pattern: "The answer is (\\-?[0-9\\.\\,]+)."
      - function: take_first
  - name: flexible
    filter:
      - function: regex
        regex_pattern: "([0-9]+)"
        group_select: 0
      - function: take_first
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1
"""
TWO_FILTER_SUITE = """name: zoo_math_2f
version: "1"
kind: lm-eval
description: "zoo_math's generation task under gsm8k_cot's two filters: strict-match's regex and a flexible one."
default_split: public
splits:
  public: [zoo_math_2f_gen]
aggregate:
  metric: exact_match,strict
"""


@pytest.mark.slow
def test_a_real_lm_eval_run_with_two_filters_is_indexed_on_the_suite_metric(
        zoo_family: Path, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """harness eval (real lm-eval, the zoo's math model) on a suite whose task logs two filters, scored on the strict
    one (gsm8k_cot's 'The answer is N.', which the zoo model never writes): the paired per-document scores average to
    the suite score and to pandas' mean of the strict sample rows, not to the flexible ones (0.83 on this model)."""
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model

    folder = tmp_path / "suites" / "zoo_math_2f"
    (folder / "data").mkdir(parents=True)
    (folder / "suite.yaml").write_text(TWO_FILTER_SUITE)
    (folder / "zoo_math_2f_gen.yaml").write_text(TWO_FILTER_TASK)
    data = Path(__file__).resolve().parents[1] / "suites" / "zoo" / "zoo_math" / "data" / "public.jsonl"
    (folder / "data" / "public.jsonl").write_text(data.read_text())
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    opts = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=16))
    res = evaluate_model(str(zoo_family / "zoo-math"), "zoo_math_2f", opts, store=store, limit=60)
    samples = store.samples(res.run_id)
    means = samples.groupby("metric")["score"].mean()
    assert abs(means["exact_match,strict"] - means["exact_match,flexible"]) > 0.1  # the filters differ here
    rules = score_rules()
    suite = views.suite_scores(store, rules=rules).set_index("run_id").loc[res.run_id]
    docs = views.doc_scores(store, [res.run_id], rules)
    assert suite["metric"] == "exact_match,strict" and suite["value"] == pytest.approx(means["exact_match,strict"])
    assert len(docs) == 60 and docs["score"].mean() == pytest.approx(means["exact_match,strict"], abs=1e-12)


DEFAULT_SPLIT_SUITE = """name: tmp_own_default
version: "1"
kind: lm-eval
default_split: public
splits:
  public: [tmp_own_public]
  other: [tmp_own_other]
aggregate:
  metric: exact_match,flexible-extract
  split_metrics:
    public: exact_match,strict-match
"""


def test_a_run_without_a_split_is_read_on_its_default_splits_metric(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A run stored with split NULL ran its suite's default split (CHOSEN_RUNS_SQL files it there), so its score is
    read on that split's own metric (aggregate.split_metrics), as a run stored under the split's name is: the
    leaderboard, the per-document index and ScoreRule.metric_for. They read the suite-level metric before
    (flexible-extract, 0.625 on these rows, against strict-match's 0.225). The split without its own metric keeps
    the suite's."""
    folder = tmp_path / "suites" / "tmp_own_default"
    folder.mkdir(parents=True)
    (folder / "suite.yaml").write_text(DEFAULT_SPLIT_SUITE)
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    rule = score_rules()["tmp_own_default"]
    assert rule.metric_for(None) == rule.metric_for("public") == STRICT
    assert rule.metric_for("other") == FLEX
    store = Store(tmp_path / "s.duckdb")
    samples = pd.concat([_write(store, "unnamed", "tmp_own_default", None, {"tmp_own_public": (STRICT, FLEX)}, 6),
                         _write(store, "named", "tmp_own_default", "public", {"tmp_own_public": (STRICT, FLEX)}, 7),
                         _write(store, "other", "tmp_own_default", "other", {"tmp_own_other": (STRICT, FLEX)}, 8)])
    want = {"unnamed": STRICT, "named": STRICT, "other": FLEX}
    suite = views.suite_scores(store, {"tmp_own_default": "public"}, rules=score_rules()).set_index("run_id")
    docs = views.doc_scores(store, sorted(want), score_rules())
    for run, metric in want.items():
        rows = samples[(samples["run_id"] == run) & (samples["metric"] == metric)]
        other = samples[(samples["run_id"] == run) & (samples["metric"] != metric)]
        assert abs(rows["score"].mean() - other["score"].mean()) > 0.1, run  # the metrics differ here
        assert suite.loc[run, "metric"] == metric, run
        assert suite.loc[run, "value"] == pytest.approx(rows["score"].mean(), abs=1e-12), run
        got = docs[docs["run_id"] == run].sort_values("doc_id")["score"].tolist()
        assert got == rows.groupby("doc_id")["score"].mean().sort_index().tolist(), run
    assert suite.loc["unnamed", "split"] == "public"
