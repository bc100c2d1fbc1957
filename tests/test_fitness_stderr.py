"""The evolve fitness's standard error when tasks pose the same questions (zoo_math's multiple choice and
generation score the same documents): simulated coverage, lm-eval's own stderr for one task, and the value a
search reports checked against lm-eval's logged samples on a zoo model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.stats import Z95, weighted_means_stderr


def paired_draw(rng: np.random.Generator, n: int, difficulty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One model's 0/1 scores on n questions asked two ways: each question's own chance of being right, shared."""
    p = difficulty[rng.integers(0, difficulty.size, n)]
    return (rng.random(n) < p).astype(float), (rng.random(n) < p).astype(float)


def independent_se(a: np.ndarray, b: np.ndarray, ca: float, cb: float) -> float:
    """The formula the fitness used before: each task's sqrt(p (1 - p) / (n - 1)), combined as independent."""
    var = sum(c * c * x.mean() * (1 - x.mean()) / (x.size - 1) for x, c in ((a, ca), (b, cb)))
    return float(var ** 0.5)


def test_shared_questions_keep_the_interval_at_95_percent() -> None:
    """Two tasks over the same 60 questions whose difficulty varies (correlated scores): the interval
    fitness +- 1.96 se covers the true fitness about 95% of the time; combining the tasks as independent covers
    far less (its se is a lower bound)."""
    rng = np.random.default_rng(7)
    difficulty = np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    truth = float(difficulty.mean())
    n, reps, hits, hits_indep = 60, 4000, 0, 0
    for _ in range(reps):
        a, b = paired_draw(rng, n, difficulty)
        keys = [f"q{i}" for i in range(n)]
        fit = 0.5 * a.mean() + 0.5 * b.mean()
        se = weighted_means_stderr([(a, keys, 0.5), (b, keys, 0.5)])
        hits += abs(fit - truth) <= Z95 * se
        hits_indep += abs(fit - truth) <= Z95 * independent_se(a, b, 0.5, 0.5)
    assert 0.93 <= hits / reps <= 0.97, hits / reps
    assert hits_indep / reps < 0.91, hits_indep / reps


def test_separate_questions_are_independent_and_one_task_is_lm_evals_stderr() -> None:
    from lm_eval.api.metrics import mean_stderr

    rng = np.random.default_rng(3)
    a, b = (rng.random(40) < 0.3).astype(float), (rng.random(25) < 0.6).astype(float)
    alone = weighted_means_stderr([(a, [f"a{i}" for i in range(40)], 1.0)])
    assert alone == pytest.approx(mean_stderr(list(a)), rel=1e-12)
    both = weighted_means_stderr([(a, [f"a{i}" for i in range(40)], 0.3), (b, [f"b{i}" for i in range(25)], 0.7)])
    assert both == pytest.approx(independent_se(a, b, 0.3, 0.7), rel=1e-12)
    assert np.isnan(weighted_means_stderr([(a[:1], ["a0"], 1.0)]))  # one document: no spread to measure


@pytest.mark.slow
def test_search_stderr_pairs_documents_as_lm_evals_logged_samples_do(zoo_family: Path) -> None:
    """The stderr a search reports for zoo-math on zoo_math_L's search split (multiple choice + generation over
    the same documents, size-weighted) equals the one computed by hand from lm-eval's logged samples, paired by
    lm-eval's own doc_hash."""
    import torch
    from lm_eval.evaluator import evaluate

    from harness.evolve.config import FitnessSuite
    from harness.evolve.engines import open_engine
    from harness.evolve.fitness import SplitTasks

    engine = open_engine("hf", zoo_family / "zoo-math", "float32", 16, None)
    tasks = SplitTasks.build((FitnessSuite(suite="zoo_math_L"),), "search", None, limit=30)
    score = tasks.score(engine.lm)
    with torch.inference_mode():
        logged = evaluate(engine.lm, SplitTasks.build((FitnessSuite(suite="zoo_math_L"),), "search", None,
                                                      limit=30).task_dict, limit=30, log_samples=True,
                          bootstrap_iters=0)["samples"]
    engine.close()
    mc, gen = logged["zoo_math_L_mc_search"], logged["zoo_math_L_gen_search"]
    assert [s["doc_hash"] for s in mc] == [s["doc_hash"] for s in gen]  # the same 30 questions
    z = np.array([s["acc"] for s in mc]) / 60 + np.array([float(s["exact_match"]) for s in gen]) / 60
    by_hand = float(np.sqrt(30 / 29 * np.sum((z - z.mean()) ** 2)))
    assert score.stderr == pytest.approx(by_hand, rel=1e-12)
    assert score.fitness == pytest.approx(float(z.sum()), abs=1e-12)


@pytest.mark.parametrize("split", ["cot", "direct", "lm_eval_direct", "lm_eval_native_cot", "lm_eval_en_cot"])
def test_a_search_on_mgsm_counts_a_problem_once_over_its_languages(split: str) -> None:
    """mgsm as a fitness suite, on every split: the 11 translations of a problem are one question of the stderr
    (the seed the real twin maps name, as the gate does; the splits other than cot ask cot's questions, suite.yaml's
    `same_questions`), so the stderr is the spread of the per-problem sums; by content hash alone they were 11
    independent documents and the stderr came out smaller for scores that move together."""
    from harness.evolve.config import FitnessSuite
    from harness.evolve.fitness import SplitTasks
    from harness.suites import load_suite

    tasks = SplitTasks.build((FitnessSuite(suite="mgsm"),), split, None, limit=20)
    metric = tuple(load_suite("mgsm").aggregate.split_metrics.get(split, "exact_match,last-number").split(","))
    rng = np.random.default_rng(4)
    solved = rng.random(20) < 0.5  # a problem solved in every language, or in none but a few
    items = {t: {metric: list((solved | (rng.random(20) < 0.1)).astype(float))} for t in tasks.members}
    coef = tasks.coefficients(dict.fromkeys(tasks.members, 20.0))
    z = sum(np.array(items[t][metric]) * coef[t] / 20 for t in tasks.members)
    by_problem = float(np.sqrt(20 / 19 * np.sum((z - z.mean()) ** 2)))
    assert tasks.stderr(items, coef) == pytest.approx(by_problem, rel=1e-12)
    english = next(t for t in tasks.members if t.endswith("_en"))
    assert len({tasks.named[t][3] for t in tasks.members}) == 1 and tasks.named[english][3] != tasks.keys[english][3]
    assert tasks.named[english][:20] == [f"gsm8k/gsm8k_cot/{i}" for i in range(20)]
    as_documents = weighted_means_stderr([(items[t][metric], tasks.keys[t], coef[t]) for t in tasks.members])
    print(f"mgsm:{split} fitness stderr: by problem {by_problem:.4f}, as 220 documents {as_documents:.4f}")
    assert as_documents < 0.5 * by_problem


def test_a_search_over_its_own_suites_folder_names_questions_by_that_folders_maps(tmp_path: Path) -> None:
    """An evolve config's suites_dir is the folder SplitTasks reads its suites from: the twin maps that tie the
    documents into questions are that folder's too (a suite only there is tied by its own map; the shipped
    suites' maps are not read for a folder that does not hold them)."""
    from harness.evolve.fitness import SplitTasks
    from tests.factories import write_twin_suite

    write_twin_suite(tmp_path / "mine" / "zq", {"zq_a_twin": "zq_public", "zq_b_twin": "zq_public"}, 4, "derived")
    tasks = SplitTasks("twin", {}, {"zq_a_twin": ("zq", "acc", 1.0), "zq_b_twin": ("zq", "acc", 1.0)}, None,
                       root=tmp_path / "mine")
    tasks.keys = {"zq_a_twin": [f"a{i}" for i in range(4)], "zq_b_twin": [f"b{i}" for i in range(4)]}
    named = tasks.item_keys({"zq_a_twin": (None, 4), "zq_b_twin": (None, 4)})
    assert named["zq_a_twin"] == named["zq_b_twin"] == [f"zq/zq_public/{i}" for i in range(4)]
