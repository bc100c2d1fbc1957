"""One definition of a suite score (harness/store/frames.py SUITE_SCORES_SQL), checked on stores made by real
`harness eval` runs: it equals lm-eval's own group result (size-weighted or not), never counts the `_aggregate` row,
ranks judge suites by rating, and the CLI leaderboard and the dashboard show the same numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.runner import EvalOptions, evaluate_model
from harness.store import frames as views
from harness.suites import ScoreRule, score_rules
from tests.test_eval_support import TmpSuite, mc_config, write_mc_data

OPTS = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))
LM_EVAL = Path(__import__("importlib.util").util.find_spec("lm_eval").origin).parent
SUITES = Path(__file__).resolve().parent.parent / "suites"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.factories import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny")


def uneven_suite(root: Path) -> TmpSuite:
    """Two multiple-choice tasks of 9 and 31 documents: weighted and unweighted means differ."""
    return TmpSuite("tmp_suite", {"public": [mc_config("tmp_small", write_mc_data(root / "a.jsonl", 9)),
                                             mc_config("tmp_large", write_mc_data(root / "b.jsonl", 31, seed=1))]})


@pytest.mark.parametrize("by_size", [True, False])
def test_suite_score_is_lm_eval_group_result(by_size: bool, results: Path, store, model: Path,
                                             tmp_path: Path) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    suite = uneven_suite(tmp_path)
    res = evaluate_model(str(model), suite, OPTS, store=store)
    assert res.score("_aggregate", "acc") is not None  # a real run stores its macro-mean row too
    import yaml

    folder = tmp_path / "lm_eval_tasks"  # the same tasks under an lm-eval group YAML, run by lm-eval itself
    folder.mkdir()
    for cfg in suite.task_configs("public"):
        (folder / f"{cfg['task']}.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "tmp_group.yaml").write_text(yaml.safe_dump({
        "group": "tmp_group", "task": ["tmp_small", "tmp_large"],
        "aggregate_metric_list": [{"metric": "acc", "weight_by_size": by_size}]}))
    direct = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(model), "dtype": "float32"}, tasks=["tmp_group"], device="cpu",
        batch_size=8, task_manager=TaskManager(include_path=str(folder), include_defaults=False),
    )
    theirs = direct["results"]["tmp_group"]
    small, large = direct["results"]["tmp_small"]["acc,none"], direct["results"]["tmp_large"]["acc,none"]
    assert small != large  # so weighting matters to the number

    (row,) = views.suite_scores(store, rules={"tmp_suite": ScoreRule("acc", by_size)}).itertuples()
    assert row.tasks == 2 and row.n == 40  # the _aggregate row is not a third task
    assert row.value == pytest.approx(theirs["acc,none"], abs=1e-12)
    assert row.se == pytest.approx(theirs["acc_stderr,none"], rel=1e-9)
    if by_size:  # the default rule (no suite.yaml) is lm-eval's default, weight_by_size: true
        (default,) = views.suite_scores(store, rules={}).itertuples()
        assert (default.value, default.se) == pytest.approx((row.value, row.se))


def test_harness_eval_prints_the_suite_score_not_the_plain_mean(results: Path, store, model: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`harness eval`'s table ended with the `_aggregate` row, the plain mean of the tasks, which reads as the suite's
    score; lm-eval's group (mmlu: size-weighted) and `harness leaderboard` give another number. The table labels it
    a plain mean and a line after it gives the suite score the leaderboard shows."""
    import re

    import yaml
    from typer.testing import CliRunner

    from harness.cli import app

    folder = tmp_path / "suites" / "uneven"
    for task, n, seed in (("uneven_small", 9, 0), ("uneven_large", 31, 1)):
        write_mc_data(folder / "data" / f"{task}.jsonl", n, seed=seed)
        cfg = mc_config(task, Path(f"data/{task}.jsonl"))
        (folder / f"{task}.yaml").write_text(yaml.safe_dump({**cfg, "dataset_kwargs": {
            "data_files": {"test": f"data/{task}.jsonl"}}}))
    (folder / "suite.yaml").write_text("name: uneven\nversion: '1'\nkind: lm-eval\ndefault_split: public\n"
                                       "splits: {public: [uneven_small, uneven_large]}\n"
                                       "aggregate: {metric: acc, weight_by_size: true}\n")
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    out = CliRunner().invoke(app, ["eval", str(model), "--suite", "uneven", "--device", "cpu", "--dtype", "float32"])
    assert out.exit_code == 0, out.output
    value = {t: float(v) for t, v in re.findall(r"│ (uneven_small|uneven_large|_aggregate \(plain mean\)) +│ acc +│ "
                                               r"([0-9.]+)", out.stdout)}
    small, large, plain = value["uneven_small"], value["uneven_large"], value["_aggregate (plain mean)"]
    assert small != large and plain == pytest.approx((small + large) / 2, abs=1e-4)
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("suite score uneven:public acc ")]
    shown = float(line.split()[4])
    assert shown == pytest.approx((9 * small + 31 * large) / 40, abs=1e-4) and abs(shown - plain) > 1e-3
    assert "size-weighted mean of 2 tasks, n 40" in line
    (board,) = views.suite_scores(store, rules=score_rules()).itertuples()
    assert shown == pytest.approx(board.value, abs=1e-4)
    # a later --limit run is not what the leaderboard shows: the line names the whole run it shows instead
    out = CliRunner().invoke(app, ["eval", str(model), "--suite", "uneven", "--device", "cpu", "--dtype", "float32",
                                   "--limit", "3"])
    assert out.exit_code == 0, out.output
    assert not [x for x in out.stdout.splitlines() if x.startswith("suite score ")]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("not on the leaderboard: ")]
    assert f"shows run {board.run_id} of uneven:public" in line and "n 40)" in line
    assert f"acc {shown:.4f}" in line


def test_suite_score_interval_stays_in_the_metric_range(store) -> None:
    """bbh at limit 2 (one task, 2 documents, one right): the normal interval was [-0.48, 1.48]; the stored
    suite score keeps lm-eval's stderr and prints Wilson's interval, inside [0, 1]; a rating stays in 1..10."""
    from harness.stats import wilson_interval
    from harness.store import RunRecord, Score

    for run_id, suite, scores in (
        ("r-bbh", "bbh", [Score("bbh_cot_fewshot_navigate", "exact_match,get-answer", 0.5, 0.5, 2)]),
        ("r-none", "bbh", [Score("bbh_cot_fewshot_navigate", "exact_match,get-answer", 0.0, 0.0, 2)]),
        ("r-mt", "mt_bench", [Score("overall", "rating", 9.6, 0.4, 4)]),
    ):
        store.start_run(RunRecord(run_id, f"m-{run_id}", suite, "hf", "0", split="test"))
        store.finish_run(run_id, scores, [])
    df = views.suite_scores(store, rules=score_rules()).set_index("run_id")
    half = df.loc["r-bbh"]
    # on the effective size p(1 - p) / se^2 = 1 (lm-eval's stderr has ddof=1)
    assert half.se == 0.5 and (half.ci_low, half.ci_high) == pytest.approx(wilson_interval(0.5, 1))
    assert 0.0 < half.ci_low < 0.5 < half.ci_high < 1.0
    none = df.loc["r-none"]  # every answer wrong: not the point [0, 0] the normal interval gave
    assert (none.ci_low, none.ci_high) == pytest.approx(wilson_interval(0.0, 2)) and none.ci_high > 0.5
    assert (df.loc["r-mt"].ci_low, df.loc["r-mt"].ci_high) == pytest.approx((9.6 - 1.959964 * 0.4, 10.0))


def test_a_task_without_a_stderr_on_a_score_that_is_no_proportion_has_an_unknown_stderr(store) -> None:
    """The binomial stderr sqrt(v (1 - v) / (n - 1)) stands in for a missing one only where v is a proportion: for a
    0-100 score (BLEU, say) it was 0, a suite score known exactly (and a twin-gap test at z = inf). Unknown instead,
    for the task and for its suite; a proportion keeps the binomial one."""
    import math

    from harness.store import RunRecord, Score

    for run_id, scores in (("r-bleu", [Score("t_bleu", "bleu", 31.5, None, 50), Score("t_acc", "acc", 0.5, 0.07, 50)]),
                           ("r-acc", [Score("t_acc", "acc", 0.5, None, 51)])):
        store.start_run(RunRecord(run_id, f"m-{run_id}", "s_mixed", "hf", "0", split="public"))
        store.finish_run(run_id, scores, [])
    df = views.suite_scores(store, rules={}).set_index("run_id")
    assert math.isnan(df.loc["r-bleu", "se"]) and math.isnan(df.loc["r-bleu", "ci_low"])  # it was 0.0 and 0.07
    assert df.loc["r-acc", "se"] == pytest.approx(math.sqrt(0.25 / 50))


@pytest.mark.parametrize("metrics", [("em", "f1"), ("exact_match", "exact_match,get-answer"), ("acc", "acc_norm"),
                                     ("bleu", "chrf", "ter"),
                                     ("exact_match,flexible-extract", "exact_match,strict-match")])
def test_the_gate_judges_the_metric_the_leaderboard_shows(store, metrics: tuple[str, ...]) -> None:
    """Where a suite names no metric, a task's metric for `harness check` is the one its suite score is on (DROP's
    em and f1: the gate took em while the leaderboard showed f1); a baseline's own per-task metric is kept."""
    from harness.store import RunRecord, Sample, Score
    from harness.workflows.baseline import primary_metric, task_samples

    run_id = "r-" + "-".join(metrics)
    store.start_run(RunRecord(run_id, "m", "s_metrics", "hf", "0", split="public"))
    store.finish_run(run_id, [Score("t", m, 0.5, 0.1, 4) for m in metrics],
                     [Sample("t", d, m, float(d % 2)) for d in range(4) for m in metrics])
    (row,) = views.suite_scores(store, rules={}).itertuples()
    assert primary_metric(list(metrics)) == row.metric
    samples = store.samples(run_id)
    assert task_samples(samples)["t"]["metric"] == row.metric
    other = next(m for m in metrics if m != row.metric)
    assert task_samples(samples, {"t": other})["t"]["metric"] == other


def upstream_group(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())["aggregate_metric_list"][0]


@pytest.mark.parametrize("suite, group_yaml", [
    ("mmlu", "mmlu/default/_mmlu.yaml"),
    ("bbh", "bbh/cot_fewshot/_bbh_cot_fewshot.yaml"),
])
def test_suite_aggregate_is_the_installed_lm_eval_group(suite: str, group_yaml: str) -> None:
    agg = upstream_group(LM_EVAL / "tasks" / group_yaml)
    rule = score_rules()[suite]
    filt = agg.get("filter_list")
    want = agg["metric"] if filt in (None, "none", ["none"]) else f"{agg['metric']},{filt}"
    assert (rule.metric, rule.weight_by_size) == (want, bool(agg.get("weight_by_size", True)))


def reported_metrics(tm, name) -> list[set[str]]:
    """The metric keys ("metric" or "metric,filter") each task under an lm-eval task, tag or group name reports."""
    if isinstance(name, dict):  # a group written inline in its parent's task list
        return [m for t in (name["task"] if isinstance(name["task"], list) else [name["task"]])
                for m in reported_metrics(tm, t)]
    entry = tm.task_index[name]
    if entry.kind.name == "TAG":
        return [m for t in sorted(entry.tags) for m in reported_metrics(tm, t)]
    if entry.kind.name == "GROUP":
        return reported_metrics(tm, {"task": entry.cfg["task"]})
    filters = [f["name"] for f in entry.cfg.get("filter_list") or []] or ["none"]
    return [{m["metric"] if f == "none" else f"{m['metric']},{f}" for m in entry.cfg["metric_list"] for f in filters}]


@pytest.mark.slow
def test_a_hub_run_is_scored_on_a_metric_its_tasks_report() -> None:
    """`--hub` runs lm-eval's own tasks (suite.yaml hub_tasks) and is stored under split `hub`: its suite score
    reads the metric the rule names for `hub`, which every one of those tasks must report. mgsm's hub tasks
    (mgsm_cot_native) report strict-match/flexible-extract, not last-number; mmlu_redux's (mmlu_redux_generative)
    exact_match,default, not acc: their hub runs had no suite score at all (no leaderboard row, no dashboard)."""
    from lm_eval.tasks import TaskManager

    from harness.suites import load_suite

    tm = TaskManager()
    rules, checked = score_rules(), []
    for name, rule in sorted(rules.items()):
        if rule.summary_task is not None or not load_suite(name).hub_tasks:
            continue
        want = rule.metric_for("hub")
        for task in load_suite(name).hub_tasks:
            reported = reported_metrics(tm, task)
            assert reported and all(want is None or want in m for m in reported), (name, task, want, reported[0])
        checked.append(name)
    assert {"mmlu", "mmlu_redux", "bbh", "mgsm", "gsm8k", "gsm_plus"} <= set(checked)


@pytest.mark.parametrize("split", ["lm_eval_direct", "lm_eval_native_cot", "lm_eval_en_cot"])
def test_mgsm_lm_eval_splits_score_on_their_tasks_first_filter(split: str) -> None:
    """lm-eval has no mgsm group (tags only): each lm-eval split's score is on its tasks' first filter, which
    differs from harness's own splits (last-number); the gate reads the same metric."""
    from harness.suites import load_suite
    from harness.workflows.baseline import suite_metric

    rule = score_rules()["mgsm"]
    firsts = {f"{cfg['metric_list'][0]['metric']},{cfg['filter_list'][0]['name']}"
              for cfg in load_suite("mgsm").task_configs(split)}
    assert firsts == {rule.metric_for(split)} == {suite_metric("mgsm", split)}
    assert rule.metric_for("cot") == rule.metric_for(None) == "exact_match,last-number" != rule.metric_for(split)


def judge_model(root: Path) -> Path:
    """A real tiny Llama whose only words are ratings: its judgments parse (FastChat's [[r]] format)."""
    from tests.factories import make_tiny_llama

    return make_tiny_llama(root, words=["Rating:", *[f"[[{i}]]" for i in range(1, 11)]])


def test_a_pairwise_run_is_a_column_of_its_own_beside_the_rating(results: Path, store, tmp_path: Path) -> None:
    """The leaderboard keeps one run per model, suite and split: a pairwise run in the rating's split replaced the
    model's mt_bench rating (1-10) by a win rate (0-1) against some baseline, in the column every other model's
    rating is in. A pairwise run has a split of its own, named by its baseline."""
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.judge.chat import ChatGenerator
    from harness.evaluate.judge.pipeline import run_judge_suite
    from harness.store import ModelRecord
    from tests.factories import make_tiny_llama

    path = judge_model(tmp_path / "judge")
    store.add_model(ModelRecord("j1", "judge-tiny", str(path), "source"))
    judge = ChatGenerator(HFLM(pretrained=str(path), device="cpu", batch_size=8),
                          {"model": "j1", "name": "judge-tiny", "backend": "hf"}, max_new_tokens=6)
    verdicts = make_tiny_llama(tmp_path / "verdicts", words=["[[A]]", "[[B]]", "[[C]]"])  # pairwise judgments parse
    referee = ChatGenerator(HFLM(pretrained=str(verdicts), device="cpu", batch_size=8),
                            {"model": "v1", "name": "verdicts-tiny", "backend": "hf"}, max_new_tokens=4)
    common = {"limit": 4, "cache_path": tmp_path / "judge.sqlite"}
    single = run_judge_suite(store, "mt_bench", "1", SUITES / "mt_bench" / "data", "j1", judge, judge, **common)
    pair = run_judge_suite(store, "mt_bench", "1", SUITES / "mt_bench" / "data", "j1", judge, referee,
                           baseline=("j1", judge), **common)
    board = views.suite_scores(store, rules=score_rules()).set_index("split")
    rated, versus = "test-by-judge-tiny@j1", "test-vs-judge-tiny-by-verdicts-tiny@v1"  # named by judge too
    assert board.loc[rated, "run_id"] == single.run_id and board.loc[rated, "metric"] == "rating"
    assert board.loc[versus, "run_id"] == pair.run_id
    assert board.loc[versus, "metric"] == "win_rate"


def test_leaderboard_cli_and_dashboard_show_the_same_scores(results: Path, store, model: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from lm_eval.models.huggingface import HFLM
    from streamlit.testing.v1 import AppTest
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.evaluate.judge.chat import ChatGenerator
    from harness.evaluate.judge.pipeline import run_judge_suite
    from harness.store import ModelRecord

    evaluate_model(str(model), uneven_suite(tmp_path), OPTS, store=store)
    path = judge_model(tmp_path / "judge")
    store.add_model(ModelRecord("j1", "judge-tiny", str(path), "source"))
    lm = HFLM(pretrained=str(path), device="cpu", batch_size=8)
    judge = ChatGenerator(lm, {"model": "j1", "backend": "hf", "role": "judge"}, max_new_tokens=6)
    run = run_judge_suite(store, "mt_bench", "1", SUITES / "mt_bench" / "data", "j1", judge, judge, limit=4,
                          cache_path=tmp_path / "judge.sqlite")
    overall = {s.metric: s for s in run.scores if s.task == "overall"}
    assert overall["rating"].value is not None and overall["parse_rate"].value > 0

    cli = CliRunner().invoke(app, ["leaderboard", "--json"])
    assert cli.exit_code == 0, cli.output
    rows = {(r["model"], r["suite"], r["split"]): r for r in json.loads(cli.stdout)}
    judged = rows[("judge-tiny", "mt_bench", "test-by-j1")]  # a judge without a name: its id
    assert judged["metric"] == "rating" and judged["value"] == pytest.approx(overall["rating"].value)
    assert judged["stderr"] == pytest.approx(overall["rating"].stderr)
    assert rows[("tiny", "tmp_suite", "public")]["tasks"] == 2
    text = CliRunner().invoke(app, ["leaderboard"]).stdout
    assert "mt_bench:test-by-j1 rating" in text and f"{judged['value']:.3f}" in text

    monkeypatch.setenv("HARNESS_DASHBOARD_PREWARM", "0")
    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    assert "mt_bench:test-by-j1" in at.sidebar.multiselect(key="lb_columns").value  # a judge's rating: a default
    at.sidebar.multiselect(key="lb_columns").set_value(["mt_bench:test-by-j1", "tmp_suite:public"]).run()
    assert not at.exception, [e.value for e in at.exception]
    board = at.dataframe[0].value.set_index("name")
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "dashboard"))
    import widgets

    for (name, suite, split), r in rows.items():
        assert board.loc[name, f"{suite}:{split}"] == widgets.fmt_score(r["value"], r["ci_low"], r["ci_high"], False,
                                                                           r["metric"])


def test_migration_recomputes_nothing_and_notes_changed_suites(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A v2 store (before one suite-score definition): the rows stay as they were, `harness db info` says which
    suites' shown scores change (those with `_aggregate` rows or judge ratings), and a fresh store has no note."""
    import duckdb
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.store import Store
    from harness.store.schema import MIGRATIONS

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    for sql in MIGRATIONS[0] + MIGRATIONS[1]:
        con.execute(sql)
    con.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    con.execute("INSERT INTO runs (run_id, model_id, suite, backend, harness_version, status) VALUES "
                "('r1', 'm', 'mmlu', 'hf', '0', 'complete'), ('r2', 'm', 'mt_bench', 'hf', '0', 'complete'), "
                "('r3', 'm', 'plain', 'hf', '0', 'complete')")
    con.execute("INSERT INTO scores (run_id, task, metric, value) VALUES ('r1', '_aggregate', 'acc', 0.5), "
                "('r1', 'mmlu_anatomy', 'acc', 0.5), ('r2', 'overall', 'rating', 5), ('r3', 't', 'acc', 0.4)")
    before = con.execute("SELECT * FROM scores ORDER BY ALL").fetchall()
    con.close()
    monkeypatch.setenv("HARNESS_DB", str(path))
    out = CliRunner().invoke(app, ["db", "info", "--json"])
    assert out.exit_code == 0, out.output
    (note,) = json.loads(out.stdout)["notes"]
    assert note.startswith("v3: ") and note.endswith("change: mmlu, mt_bench")
    with Store(path).db.read() as con:
        assert con.execute("SELECT * FROM scores ORDER BY ALL").fetchall() == before
    fresh = Store(tmp_path / "fresh.duckdb")
    fresh.init()
    assert fresh.notes() == []


def test_a_judge_run_without_a_rating_has_no_suite_score(store) -> None:
    """A judge whose judgments never parse stores a parse rate and no rating: the suite score is missing, never the
    parse rate shown as if it were the score (found on the real model judging itself in make demo)."""
    from harness.store import RunRecord, Score

    rules = {"judged": ScoreRule(None, True, "overall")}
    for run_id, scores in (("r-none", [Score("overall", "parse_rate", 0.0, 0.0, 2, 0.0, 0.0)]),
                           ("r-rated", [Score("overall", "parse_rate", 1.0, 0.0, 2, 1.0, 1.0),
                                        Score("overall", "rating", 6.5, 0.5, 2, 5.5, 7.5)])):
        store.start_run(RunRecord(run_id=run_id, model_id=f"m-{run_id}", suite="judged", backend="hf",
                                  harness_version="test", split="test"))
        store.finish_run(run_id, scores, [])
    df = views.suite_scores(store, rules=rules)
    assert list(df["model_id"]) == ["m-r-rated"] and list(df["metric"]) == ["rating"]
    assert float(df["value"].iloc[0]) == 6.5


def test_the_latest_complete_run_and_each_tasks_first_metric(store) -> None:
    """Per (model, suite, split): the complete run that ended last (ties: the highest run_id; a run without an end
    time only when no run has one, one from 1960 beats it), a failed run never; per task its first metric in
    PRIMARY_METRICS order (exact_match before bleu), the run's metrics joined by '+', values weighted by size."""
    from harness.store import RunRecord, Score

    ended = {"a1": "2026-01-01", "a2": "2026-01-03", "a3": "2026-01-03", "a0": None, "b1": None, "b2": None,
             "c1": None, "c0": "1960-01-01", "d1": "2026-01-02", "d2": "2026-01-05"}
    for i, run_id in enumerate(ended):
        store.start_run(RunRecord(run_id=run_id, model_id=f"m-{run_id[0]}", suite="latest", backend="hf",
                                  harness_version="test", split="test"))
        if run_id == "d2":
            store.fail_run(run_id, "boom")
            continue
        store.finish_run(run_id, [Score("t1", "bleu", 0.9, 0.1, 10), Score("t1", "exact_match", i / 20, 0.1, 10),
                                  Score("t2", "acc_norm", 0.5, 0.1, 30)], [])
    with store.db.write() as con:
        for run_id, at in ended.items():
            con.execute("UPDATE runs SET ended = ?::TIMESTAMP WHERE run_id = ?", [at, run_id])
    df = views.suite_scores(store, rules={}).set_index("model_id")
    assert df["run_id"].to_dict() == {"m-a": "a3", "m-b": "b2", "m-c": "c0", "m-d": "d1"}
    assert set(df["metric"]) == {"acc_norm+exact_match"} and set(df["tasks"]) == {2} and set(df["n"]) == {40}
    index = list(ended).index
    for model, run_id in df["run_id"].items():
        assert df.loc[model, "value"] == pytest.approx((10 * index(run_id) / 20 + 30 * 0.5) / 40, abs=1e-12)


def test_the_run_with_the_most_documents_then_the_latest(store) -> None:
    """Per (model, suite, split) the suite score, Store.leaderboard's rows and the CLI read one run: the complete one
    that scored the most documents (per task the largest n of its rows, summed over the tasks, the `_aggregate` row
    never counted), then the latest. A later --limit run replaced a whole one (m-a showed t1 0.0 and t2 1.0 on 10
    documents in place of 0.5 on 40); a later whole run still replaces an earlier one (m-c); a --limit run alone
    is shown (m-d); a run without a split counts with its suite's default split's runs (m-e)."""
    from harness.store import RunRecord, Score

    def run(run_id: str, day: int, t1: int, t2: int, value: float, split: str | None = "test",
            extra: tuple[Score, ...] = ()) -> None:
        store.start_run(RunRecord(run_id=run_id, model_id=f"m-{run_id[0]}", suite="most", backend="hf",
                                  harness_version="test", split=split))
        store.finish_run(run_id, [Score("t1", "exact_match", value, 0.1, t1), Score("t2", "acc", 1 - value, 0.1, t2),
                                  *extra], [])
        with store.db.write() as con:
            con.execute("UPDATE runs SET ended = ?::TIMESTAMP WHERE run_id = ?", [f"2026-01-0{day}", run_id])

    run("a1", 1, 10, 30, 0.5)
    run("a2", 3, 5, 5, 0.0)  # --limit 5, later
    run("b1", 3, 5, 5, 0.2, extra=(Score("_aggregate", "acc", 0.4, 0.0, 1000),))  # the _aggregate row counts nothing
    run("b2", 1, 10, 30, 0.3)
    run("c1", 1, 10, 30, 0.6)
    run("c2", 2, 10, 30, 0.7)  # the whole split again, other settings: the later one
    run("d1", 1, 5, 5, 0.8)
    run("e1", 1, 10, 30, 0.9, split=None)  # the suite's default split, 'test'
    run("e2", 2, 10, 0, 0.1)  # --tasks t1 on the default split by name
    run("f1", 1, 10, 30, 0.25, extra=(Score("t2", "acc_norm", 0.5, 0.1, 31),))  # t2 counts 31: the most of its rows
    run("f2", 2, 10, 30, 0.75)
    want = {"m-a": "a1", "m-b": "b2", "m-c": "c2", "m-d": "d1", "m-e": "e1", "m-f": "f1"}
    df = views.suite_scores(store, {"most": "test"}, rules={}).set_index("model_id")
    assert df["run_id"].to_dict() == want and set(df["split"]) == {"test"}
    assert df.loc["m-a", ["value", "n"]].tolist() == pytest.approx([(10 * 0.5 + 30 * 0.5) / 40, 40])
    board = store.leaderboard("most", {"most": "test"})
    assert board.groupby("model_id")["run_id"].agg(set).to_dict() == {m: {r} for m, r in want.items()}
    assert set(board["split"]) == {"test"}
