"""The suite score's stderr where a suite asks one question several times (MGSM's 11 languages, a zoo document by
multiple choice and by generation): question-clustered, computed when the run is written (harness/store/suite_se.py),
read by SUITE_SCORES_SQL; lm-eval's own, bit for bit, where every question has one item.

The simulation's figures are in docs/overfitting.md "The suite score"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.stats import Z95, question_clustered_stderr, weighted_means_stderr


def _lm_eval_se(tasks: list[np.ndarray], by_size: bool) -> float:
    """lm-eval's stderr of a group: pooled_sample_stderr over the task stderrs (size-weighted), else the
    unweighted mean's."""
    from lm_eval.api.metrics import mean_stderr, pooled_sample_stderr

    ses = [mean_stderr(list(x)) for x in tasks]
    if by_size:
        return float(pooled_sample_stderr(ses, [x.size for x in tasks]))
    return float(np.sqrt(np.sum(np.square(ses))) / len(tasks))


def test_one_item_per_question_is_lm_evals_stderr_up_to_an_exact_factor() -> None:
    """Singleton questions: var = (N - k) / (N - 1) pooled^2 (size-weighted), and per task N (n_t - 1) / ((N - 1) n_t)
    of lm-eval's se_t^2 (plain mean): the factors, exactly (the stored column stays NULL there anyway)."""
    rng = np.random.default_rng(11)
    tasks = [(rng.random(n) < p).astype(float) for n, p in ((40, 0.3), (25, 0.6), (70, 0.5))]
    keys = [[f"{t}/{i}" for i in range(x.size)] for t, x in enumerate(tasks)]
    big_n, k = sum(x.size for x in tasks), len(tasks)
    sized = question_clustered_stderr([(x, kk, x.size / big_n) for x, kk in zip(tasks, keys, strict=True)])
    assert sized == pytest.approx(_lm_eval_se(tasks, True) * np.sqrt((big_n - k) / (big_n - 1)), rel=1e-12)
    plain = question_clustered_stderr([(x, kk, 1 / k) for x, kk in zip(tasks, keys, strict=True)])
    from lm_eval.api.metrics import mean_stderr

    want = sum(big_n * (x.size - 1) / ((big_n - 1) * x.size) * mean_stderr(list(x)) ** 2 for x in tasks) / k**2
    assert plain == pytest.approx(np.sqrt(want), rel=1e-12)
    assert 0.98 < sized / _lm_eval_se(tasks, True) < 1 and 0.98 < plain / _lm_eval_se(tasks, False) < 1.01


def test_every_question_in_every_task_is_the_fitness_stderr() -> None:
    """Where each question is posed once by every task (MGSM), it is the evolve fitness's stderr exactly."""
    rng = np.random.default_rng(5)
    tasks = [(rng.random(30) < 0.4).astype(float) for _ in range(4)]
    keys = [f"q{i}" for i in range(30)]
    for c in (0.25, 0.1):
        assert question_clustered_stderr([(x, keys, c) for x in tasks]) == pytest.approx(
            weighted_means_stderr([(x, keys, c) for x in tasks]), rel=1e-12)
    assert np.isnan(question_clustered_stderr([(tasks[0][:3], ["a", "a", "a"], 1.0)]))  # one question


def _coverage(rng: np.random.Generator, spread: float, reps: int, by_size: bool) -> tuple[float, float]:
    """Fraction of runs whose value +- 1.96 se covers the true mean: (clustered, lm-eval's pooled), for runs of 60
    questions x 11 languages (uneven sizes when not by_size: languages score 60 or 30 of the problems), each
    question's chance of being right logistic(offset_lang + u), u ~ N(0, spread) shared by its 11 items."""
    g, langs = 60, 11
    offset = np.linspace(-0.8, 0.8, langs)
    sizes = [g if by_size or t % 2 == 0 else g // 2 for t in range(langs)]
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # E over u of logistic(offset + u), by quadrature
    truth_t = [float(np.sum(weights / np.sqrt(2 * np.pi) / (1 + np.exp(-(o + spread * nodes))))) for o in offset]
    truth = (float(np.dot(truth_t, sizes)) / sum(sizes)) if by_size else float(np.mean(truth_t))
    hits = np.zeros(2)
    for _ in range(reps):
        u = rng.normal(0.0, spread, g)
        tasks = [(rng.random(n) < 1 / (1 + np.exp(-(o + u[:n])))).astype(float) for o, n in zip(offset, sizes,
                                                                                                  strict=True)]
        big_n = sum(sizes)
        coef = [n / big_n if by_size else 1 / langs for n in sizes]
        value = sum(c * x.mean() for c, x in zip(coef, tasks, strict=True))
        se = question_clustered_stderr([(x, [f"q{i}" for i in range(x.size)], c)
                                        for x, c in zip(tasks, coef, strict=True)])
        hits += np.abs(value - truth) <= Z95 * np.array([se, _lm_eval_se(tasks, by_size)])
    return float(hits[0] / reps), float(hits[1] / reps)


@pytest.mark.parametrize("by_size", [True, False])
def test_simulated_coverage_is_95_percent_with_questions_clustered(by_size: bool) -> None:
    """A latent per-question effect shared by a question's 11 items: the clustered interval covers ~95% (1000 runs:
    simulation error ~0.7 points), the pooled one far less; with independent items (no shared effect) both ~95%."""
    rng = np.random.default_rng(2026)
    shared, pooled = _coverage(rng, 1.5, 1000, by_size)
    assert 0.92 <= shared <= 0.975, shared
    assert pooled < 0.8, pooled
    alone, pooled_alone = _coverage(rng, 0.0, 1000, by_size)
    assert 0.92 <= alone <= 0.975 and 0.92 <= pooled_alone <= 0.975, (alone, pooled_alone)


def _write_run(store, suite: str, split: str, rows: dict[str, list[tuple[float, str]]], metric: str,
               also: str | None = None) -> str:
    """A run of suite:split written as the runner writes one: lm-eval's task rows (mean, its stderr, n), the
    samples with their doc_hash, the questions named by harness.seed_questions through the runner's helper; `also`:
    a second metric with the same scores."""
    from lm_eval.api.metrics import mean_stderr

    from harness.evaluate.lm_eval_run import scored_questions
    from harness.store.records import RunRecord, Sample, Score

    run = RunRecord(f"r-{suite}-{split}-{len(store.list_runs(status=None))}", f"m-{suite}", suite, "synthetic", "0",
                    split=split)
    store.start_run(run)
    names = [metric] + ([also] if also else [])
    samples = [Sample(task, i, m, s, doc_hash=h) for m in names for task, items in rows.items()
               for i, (s, h) in enumerate(items)]
    scores = [Score(task, m, float(np.mean([s for s, _ in items])), mean_stderr([s for s, _ in items]), len(items))
              for m in names for task, items in rows.items()]
    questions, want = scored_questions(run, samples)
    store.finish_run(run.run_id, scores, samples, questions, want)
    return run.run_id


def _board(store, run_id: str):
    from harness.store.frames import suite_scores
    from harness.suites import score_rules

    df = suite_scores(store, rules=score_rules())
    return df[df["run_id"] == run_id].iloc[0]


def _stored_columns(store, run_id: str) -> tuple:
    with store.db.read() as con:
        return con.execute("SELECT question_metric, question_se_size, question_se_mean FROM runs WHERE run_id = ?",
                           [run_id]).fetchone()


def test_an_mgsm_run_gets_the_clustered_stderr_and_gsm8k_keeps_lm_evals(store) -> None:
    """mgsm:cot through the real suite (its xling map ties row i of the 11 languages): the leaderboard's se is the
    clustered one over the problems, wider than lm-eval's pooled one; gsm8k (each problem once) stores nothing and
    shows lm-eval's pooled stderr."""
    from harness.suites import load_suite

    rng = np.random.default_rng(4)
    tasks, n = load_suite("mgsm").splits["cot"], 40
    u = rng.normal(0, 1.5, n)
    rows = {t: [(float(rng.random() < 1 / (1 + np.exp(-u[i]))), f"{t}#{i}") for i in range(n)] for t in tasks}
    run_id = _write_run(store, "mgsm", "cot", rows, "exact_match,last-number")
    row = _board(store, run_id)
    arrays = [np.array([s for s, _ in rows[t]]) for t in tasks]
    want = question_clustered_stderr([(x, list(range(n)), 1 / len(tasks)) for x in arrays])  # row i: one problem
    assert row["se"] == pytest.approx(want, rel=1e-12) and row["metric"] == "exact_match,last-number"
    assert row["se"] > 2 * _lm_eval_se(arrays, True)
    assert _stored_columns(store, run_id)[0] == "exact_match,last-number"

    gsm = {"gsm8k_cot": [(float(rng.random() < 0.4), f"h{i}") for i in range(60)]}
    gsm_id = _write_run(store, "gsm8k", "public", gsm, "exact_match,strict-match")
    assert _stored_columns(store, gsm_id) == (None, None, None)
    pooled = _lm_eval_se([np.array([s for s, _ in gsm["gsm8k_cot"]])], True)
    assert _board(store, gsm_id)["se"] == pytest.approx(pooled, rel=1e-12)


def test_a_gsm_plus_run_counts_a_seed_once_over_its_perturbations(store) -> None:
    """gsm_plus:testmini (gsm8k's `plus` map ties each item to its GSM8K seed): the stored se is clustered by seed,
    as harness.seed_questions names them (what `harness check` clusters by)."""
    from harness.seed_questions import question_keys
    from harness.suites import load_suite

    rng = np.random.default_rng(6)
    tasks = load_suite("gsm_plus").splits["testmini"]
    rows = {t: [(float(rng.random() < 0.5), f"{t}#{i}") for i in range(30)] for t in tasks}
    run_id = _write_run(store, "gsm_plus", "testmini", rows, "exact_match,strict-match")
    named = question_keys("gsm_plus", "testmini", {(t, i): h for t, v in rows.items() for i, (_, h) in enumerate(v)})
    assert len(set(named.values())) == 30 and len(named) == 7 * 30  # row i of every perturbation: one seed
    parts = [(np.array([x for x, _ in rows[t]]), [named[(t, i)] for i in range(30)], 30 / 210) for t in tasks]
    row = _board(store, run_id)
    assert row["se"] == pytest.approx(question_clustered_stderr(parts), rel=1e-12)
    assert _stored_columns(store, run_id)[0] == "exact_match,strict-match"


def test_the_plain_mean_reads_its_own_and_a_changed_metric_reads_lm_evals(store) -> None:
    """zoo_math's two tasks score the same documents: the run stores both definitions, and the suite score reads
    the one its rule asks for (the plain mean of task means: weight_by_size false); the stored stderr is for the
    metrics it was computed on (acc, the first primary), so a rule that now names acc_norm reads lm-eval's."""
    from harness.store.frames import suite_scores
    from harness.store.records import ScoreRule

    rng = np.random.default_rng(8)
    sizes = {"zoo_math_mc_public": 30, "zoo_math_gen_public": 20}  # generation scored the first 20 only
    u = rng.normal(0, 1.5, 30)
    rows = {t: [(float(rng.random() < 1 / (1 + np.exp(-u[i]))), f"d{i}") for i in range(n)] for t, n in sizes.items()}
    run_id = _write_run(store, "zoo_math", "public", rows, "acc", also="acc_norm")
    assert _stored_columns(store, run_id)[0] == "acc"
    arrays = {t: np.array([s for s, _ in v]) for t, v in rows.items()}

    def read(rule: ScoreRule) -> float:
        df = suite_scores(store, rules={"zoo_math": rule})
        return float(df[df["run_id"] == run_id].iloc[0]["se"])

    plain = question_clustered_stderr([(x, list(range(x.size)), 0.5) for x in arrays.values()])
    sized = question_clustered_stderr([(x, list(range(x.size)), x.size / 50) for x in arrays.values()])
    assert read(ScoreRule(weight_by_size=False)) == pytest.approx(plain, rel=1e-12)
    assert read(ScoreRule()) == pytest.approx(sized, rel=1e-12) and sized != pytest.approx(plain)
    assert read(ScoreRule(metric="acc_norm")) == pytest.approx(_lm_eval_se(list(arrays.values()), True), rel=1e-12)
    assert read(ScoreRule(metric="acc_norm", weight_by_size=False)) == pytest.approx(
        _lm_eval_se(list(arrays.values()), False), rel=1e-12)


def test_the_suites_metric_is_read_from_its_samples_and_a_value_they_do_not_make_stores_nothing(store) -> None:
    """The suite's metric (f1, not the primary acc) over 3 sample rows per document: each document is the mean of
    its rows, as the stored value is; a task whose stored value (NaN included) or size its documents do not make
    stores NULLs."""
    from harness.store.records import RunRecord, Sample, Score

    rng = np.random.default_rng(13)
    f1 = {t: rng.random((20, 3)) for t in ("a", "b")}
    samples = [Sample(t, d, "f1", float(x[d, k])) for t, x in f1.items() for d in range(20) for k in range(3)]
    samples += [Sample(t, d, "acc", 1.0) for t in f1 for d in range(20)]
    questions = {(t, d): f"q{d}" for t in f1 for d in range(20)}

    def write(name: str, off: float = 0.0, n: int = 20) -> tuple:
        store.start_run(RunRecord(name, "m", "s", "synthetic", "0"))
        scores = [Score(t, "f1", float(x.mean(axis=1).mean()) + (off if t == "b" else 0), 0.1, n if t == "b" else 20)
                  for t, x in f1.items()] + [Score(t, "acc", 1.0, 0.0, 20) for t in f1]
        store.finish_run(name, scores, samples, questions, "f1")
        return _stored_columns(store, name)

    want = question_clustered_stderr([(f1[t].mean(axis=1), list(range(20)), 0.5) for t in f1])
    metric, by_size, by_mean = write("exact")
    assert metric == "f1" and by_size == pytest.approx(want, rel=1e-12) and by_mean == pytest.approx(want, rel=1e-12)
    assert write("close", off=1e-12)[0] == "f1"
    assert write("off", off=1e-6) == (None, None, None)
    assert write("size", n=21) == (None, None, None)
    assert write("nan", off=float("nan")) == (None, None, None)  # a NaN task value: no documents make it


def _zoo_math_run(zoo_family: Path, path: Path) -> tuple[str, float]:
    """zoo-math on zoo_math:public through the runner (lm-eval, 16 documents a task) into the store at `path`:
    its run id and the suite score's se the leaderboard shows."""
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model
    from harness.store import Store

    opts = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8), use_cache=False)
    store = Store(path)
    res = evaluate_model(str(zoo_family / "zoo-math"), "zoo_math", opts, store=store, limit=16)
    return res.run_id, float(_board(store, res.run_id)["se"])


def test_a_run_written_before_v5_gets_the_stderr_a_new_run_of_its_samples_gets(zoo_family: Path, results: Path,
                                                                                 tmp_path: Path) -> None:
    """A real zoo_math run in a v4 file (no question columns) migrates on open; `harness db info`, or the next run
    recorded in the store, computes the clustered stderr of the runs written before from their stored samples: the
    leaderboard's se then equals the fresh store's bit for bit. Before, the old run kept lm-eval's pooled se (0.134
    against 0.189 on the audit's zoo-math twin; here the figures the test prints) beside new runs' clustered one."""
    import shutil

    from harness.store import Store
    from tests.factories import downgrade_store, run_cli

    fresh = results / "harness.duckdb"
    run_id, want = _zoo_math_run(zoo_family, fresh)
    samples = Store(fresh).samples(run_id)
    arrays = [samples[(samples["task"] == t) & (samples["metric"] == m)].sort_values("doc_id")["score"].to_numpy()
              for t, m in (("zoo_math_mc_public", "acc"), ("zoo_math_gen_public", "exact_match,strip"))]
    pooled = _lm_eval_se(arrays, False)
    assert want != pytest.approx(pooled, rel=1e-6), "these samples do not tell the two rules apart"
    for how in ("db info", "eval"):
        old = tmp_path / f"{how}.duckdb"
        shutil.copy(fresh, old)
        downgrade_store(old, 4)  # the file as a v4 harness wrote it
        if how == "db info":
            assert run_cli("--db", str(old), "db", "info")[0] == 0
        else:
            _zoo_math_run(zoo_family, old)  # a re-run: a new attempt, recorded in the migrated store
        got = float(_board(Store(old), run_id)["se"])
        print(f"{how}: the old run's se {got!r}, a fresh store's {want!r}, lm-eval's pooled {pooled!r}")
        assert got == want


@pytest.mark.slow
def test_a_zoo_math_run_through_the_runner_clusters_its_two_tasks(results: Path, store,
                                                                  tmp_path: Path) -> None:
    """harness eval on the real zoo_math suite (lm-eval, a tiny model): multiple choice and generation score the
    same documents, so the suite score's se is clustered by document, as recomputed here from the stored samples;
    each task's own value and stderr stay lm-eval's."""
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model
    from tests.factories import make_tiny_llama

    model = make_tiny_llama(tmp_path / "tiny")
    opts = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))
    res = evaluate_model(str(model), "zoo_math", opts, store=store, limit=12)
    samples = store.samples(res.run_id)
    parts = []
    for task, metric in (("zoo_math_mc_public", "acc"), ("zoo_math_gen_public", "exact_match,strip")):
        rows = samples[(samples["task"] == task) & (samples["metric"] == metric)].sort_values("doc_id")
        assert res.score(task, metric).value == pytest.approx(rows["score"].mean(), abs=1e-12)
        parts.append((rows["score"].to_numpy(), rows["doc_hash"].tolist(), 0.5))
    assert parts[0][1] == parts[1][1]  # the same documents, in the same order
    stored = _stored_columns(store, res.run_id)
    assert stored[0] == "acc+exact_match,strip"
    if np.ptp(parts[0][0]) or np.ptp(parts[1][0]):
        assert _board(store, res.run_id)["se"] == pytest.approx(question_clustered_stderr(parts), rel=1e-12)
