"""The regression gate's statistics on synthetic data, checked against scipy and by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from harness.analysis.gate import compare, holm, markdown_report
from harness.stats import mcnemar_exact, paired_compare


def _scores(values: np.ndarray) -> dict[int, float]:
    return {i: float(v) for i, v in enumerate(values)}


@pytest.mark.parametrize("a_only, b_only", [(0, 0), (3, 9), (10, 10), (1, 20), (40, 25), (0, 7)])
def test_mcnemar_equals_scipy_exact_binomial(a_only: int, b_only: int) -> None:
    expected = 1.0 if a_only + b_only == 0 else binomtest(a_only, a_only + b_only, 0.5).pvalue
    assert mcnemar_exact(a_only, b_only) == pytest.approx(expected, rel=1e-9)


def test_paired_interval_coverage_is_near_nominal() -> None:
    """Over 300 simulated paired binary samples, the 95% interval covers the true difference ~95% of the time."""
    rng = np.random.default_rng(1)
    p_a, p_b, n, trials = 0.6, 0.55, 200, 300
    covered = 0
    for _ in range(trials):
        latent = rng.random(n)
        a = (latent < p_a).astype(float)  # correlated pairs, as two models on the same items
        b = (np.where(rng.random(n) < 0.7, latent, rng.random(n)) < p_b).astype(float)
        c = paired_compare(a, b)
        covered += c.ci_low <= (p_b - p_a) <= c.ci_high
    assert 0.91 <= covered / trials <= 0.98


def test_holm_matches_hand_computation() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_self_comparison_passes() -> None:
    rng = np.random.default_rng(0)
    base = {t: _scores(rng.random(300) < 0.7) for t in ("math", "lang")}
    result = compare(base, base)
    assert result.passed and all(v.diff == 0 and v.p_value == 1.0 for v in result.verdicts)


def test_a_real_drop_fails_and_names_the_task() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.8
    damaged = a & (rng.random(400) < 0.7)  # loses ~30% of its correct answers
    base = {"math": _scores(a), "lang": _scores(a)}
    cand = {"math": _scores(damaged), "lang": _scores(a)}
    result = compare(base, cand, tolerance=0.05)
    assert not result.passed and result.failed_tasks == ["math"]
    v = result.verdicts[1]
    assert v.task == "math" and v.test == "mcnemar" and v.p_holm < 1e-6 and v.ci_high < 0
    assert "FAIL" in markdown_report(result, "check") and "math" in markdown_report(result, "check")


def test_small_noise_within_tolerance_passes() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.8
    flip = rng.random(400) < 0.02
    result = compare({"math": _scores(a)}, {"math": _scores(a ^ flip)}, tolerance=0.05)
    assert result.passed


def test_small_samples_are_reported_as_underpowered() -> None:
    rng = np.random.default_rng(0)
    a = rng.random(20) < 0.5
    result = compare({"t": _scores(a)}, {"t": _scores(a)}, tolerance=0.02)
    assert result.passed and result.underpowered_tasks == ["t"] and result.verdicts[0].mde > 0.2
    assert "underpowered" in markdown_report(result, "check")


def test_missing_task_fails() -> None:
    result = compare({"a": {0: 1.0}, "b": {0: 1.0}}, {"a": {0: 1.0}})
    assert not result.passed and result.missing == ["b"]


def test_continuous_scores_use_a_paired_t_test() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(7, 1, 200)
    result = compare({"rating": _scores(a)}, {"rating": _scores(a - 1 + rng.normal(0, 0.3, 200))}, tolerance=0.5)
    assert result.verdicts[0].test == "paired-t" and result.failed_tasks == ["rating"]


def _subjects(seed: int = 0) -> dict[str, dict[int, float]]:
    """57 subjects of MMLU's real test sizes (14,042 items) at ~60% accuracy."""
    import json
    from pathlib import Path

    sizes = json.loads((Path(__file__).resolve().parent.parent / "suites/mmlu/twins/permuted.json").read_text())
    rng = np.random.default_rng(seed)
    return {t: {i: float(rng.random() < 0.6) for i in range(n)} for t, n in sizes["public_sizes"].items()}


def test_57_subjects_each_down_1_5_points_fail_on_the_pooled_test() -> None:
    base = _subjects()
    cand = {}
    for t, docs in base.items():  # 1.5% of each subject's items go from right to wrong
        right = [i for i, v in docs.items() if v == 1]
        k = round(0.015 * len(docs))
        cand[t] = {i: (0.0 if i in set(right[:k]) else v) for i, v in docs.items()}
    result = compare(base, cand, tolerance=0.02)
    assert len(result.verdicts) == 57 and not result.failed_tasks  # no task alone clears its tolerance
    assert result.pooled is not None and result.pooled.failed and not result.passed
    assert result.pooled.diff == pytest.approx(-0.015, abs=0.001) and result.pooled.n == 14042
    assert result.pooled.mde < 0.01  # from the observed discordance, at Holm's first step over 58 tests
    assert "95% CI" in markdown_report(result, "t") and "(all tasks, pooled)" in markdown_report(result, "t")
    assert "90% CI" in markdown_report(compare(base, cand, alpha=0.1), "t")


def test_no_change_fails_at_most_alpha_of_the_time() -> None:
    """Candidate = baseline with symmetric random flips (no true change): the gate fails in at most alpha of 400
    simulations (upper 95% binomial bound), with a small suite tolerance so the tests decide."""
    rng = np.random.default_rng(7)
    fails = 0
    for _ in range(200):
        p = {f"t{j}": rng.beta(2, 1.5, 80) for j in range(12)}  # item difficulties
        base = {t: _scores(rng.random(80) < q) for t, q in p.items()}
        cand = {t: _scores(rng.random(80) < q) for t, q in p.items()}
        fails += not compare(base, cand, tolerance=0.0, suite_tolerance=0.0).passed
    assert binomtest(fails, 200).proportion_ci(0.95).low <= 0.05, fails


def test_mde_never_claims_zero_and_constant_differences_need_items() -> None:
    same = {"t": {i: 1.0 for i in range(50)}}
    v = compare(same, same).verdicts[0]
    assert v.mde > 0.05 and not v.failed  # the rule-of-three floor on discordance, not 0
    tiny_a, tiny_b = {"t": {0: 0.5, 1: 0.5}}, {"t": {0: 0.2, 1: 0.2}}
    w = compare(tiny_a, tiny_b, tolerance=0.01).verdicts[0]
    assert w.p_value == 0.5 and not w.failed  # two items: the exact sign-flip p, not 0


def _shared_questions(rng: np.random.Generator, n: int, drop: float = 0.0) -> tuple[dict, dict]:
    """Baseline and candidate on n questions asked two ways (multiple choice and generation): a candidate change
    to a question (right -> wrong or back, 10% each way, plus `drop` more towards wrong) shows in both tasks."""
    p = rng.uniform(0.2, 0.8, n)
    change = rng.choice([-1, 0, 1], size=n, p=[0.1 + drop, 0.8 - drop, 0.1])
    base, cand = {}, {}
    for task in ("mc", "gen"):
        a = (rng.random(n) < p).astype(float)
        b = np.where(change == 1, 1.0, np.where(change == -1, 0.0, a))
        base[task], cand[task] = dict(enumerate(a)), dict(enumerate(b))
    return base, cand


def test_questions_asked_twice_keep_the_pooled_test_at_its_level() -> None:
    """No true difference, 100 questions each scored by two tasks: counted as 200 independent items, the pooled
    test rejects far more often than alpha = 5%; counted by question (the samples' doc_hash), at most alpha."""
    from harness.analysis.gate import pooled_test

    rng = np.random.default_rng(11)
    keys = [np.array([f"q{i}" for i in range(100)], dtype=object)] * 2
    reps, as_items, by_question = 600, 0, 0
    for r in range(reps):
        base, cand = _shared_questions(rng, 100)
        pairs = [(np.array(list(base[t].values())), np.array(list(cand[t].values()))) for t in ("mc", "gen")]
        as_items += pooled_test(pairs)[1] < 0.05
        test, p, _, _, n = pooled_test(pairs, keys, seed=r)
        by_question += p < 0.05
        assert test == "sign-flip (pooled, by question)" and n == 200
    assert as_items / reps > 0.07, as_items / reps
    assert by_question / reps <= 0.05, by_question / reps
    clusters = {t: {i: f"q{i}" for i in range(100)} for t in ("mc", "gen")}  # the gate passes them through
    assert compare(base, cand, clusters=clusters).pooled.p_value == pooled_test(pairs, keys, seed=0)[1]


def test_the_sign_flip_test_is_mcnemars_for_one_item_per_question_and_sees_a_real_drop() -> None:
    from harness.analysis.gate import sign_flip_p

    rng = np.random.default_rng(5)
    for _ in range(20):
        d = rng.choice([-1.0, 0.0, 1.0], size=40, p=[0.15, 0.7, 0.15])
        d = d[:16] if np.count_nonzero(d) > 16 else d
        nz = d[d != 0]
        assert sign_flip_p(nz) == pytest.approx(mcnemar_exact(int(np.sum(nz < 0)), int(np.sum(nz > 0))), rel=1e-12)
    base, cand = _shared_questions(np.random.default_rng(2), 300, drop=0.15)
    clusters = {t: {i: f"q{i}" for i in range(300)} for t in ("mc", "gen")}
    result = compare(base, cand, tolerance=1.0, clusters=clusters)
    assert result.pooled.failed and result.pooled.p_value < 1e-3 and not result.passed


MGSM_LANGS = ("bn", "de", "en", "es", "fr", "ja", "ru", "sw", "te", "th", "zh")


def _mgsm_questions(n: int, split: str = "cot") -> list[np.ndarray]:
    """The question of each item of mgsm:`split`'s first n documents per language, as the gate names it from the
    real twin maps (harness/seed_questions.py; each document's own hash where no map ties it; a split other than cot
    asks cot's questions, suite.yaml's `same_questions`)."""
    from harness.seed_questions import question_keys
    from harness.suites import load_suite

    tasks = load_suite("mgsm").splits[split]
    keys = question_keys("mgsm", split, {(t, i): f"{t}{i}" for t in tasks for i in range(n)})
    return [np.array([keys[(t, i)] for i in range(n)], dtype=object) for t in tasks]


def _translated(rng: np.random.Generator, n: int, drop: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Baseline and candidate on n problems asked in 11 languages: each model's chance on a problem moves by a
    latent of its own, shared by the problem's translations (logit N(0, 1.5) each, the problem's difficulty
    N(0, 1.5), a language's N(0, 0.5)); the candidate's moves `drop` logits down. With drop 0 the two models are
    exchangeable: no true difference."""
    theta = rng.normal(0, 1.5, n)
    shift_a, shift_b = rng.normal(0, 1.5, n), rng.normal(-drop, 1.5, n)
    pairs = []
    for _ in MGSM_LANGS:
        lang = theta + rng.normal(0, 0.5, n)
        a = (rng.random(n) < 1 / (1 + np.exp(-(lang + shift_a)))).astype(float)
        b = (rng.random(n) < 1 / (1 + np.exp(-(lang + shift_b)))).astype(float)
        pairs.append((a, b))
    return pairs


@pytest.mark.parametrize(("split", "seed"), [("cot", 7), ("lm_eval_en_cot", 8)])
def test_translations_count_once_in_the_pooled_test(split: str, seed: int) -> None:
    """MGSM-shaped, no true difference: 60 problems x 11 languages, each model's change on a problem shared by its
    translations. Counted as 660 independent items the pooled test rejects far more often than alpha = 5%; counted
    by the seed question the real twin maps name, at most alpha up to simulation error (1,000 reps: 2 sd = 1.4
    points), on cot and on lm-eval's own tasks (which ask cot's questions: `same_questions`). A real drop (the
    candidate's latents 1.5 logits down: 17.6 points) is still detected."""
    from harness.analysis.gate import pooled_test
    from harness.suites import load_suite

    keys, tasks = _mgsm_questions(60, split), load_suite("mgsm").splits[split]
    assert len(set(np.concatenate(keys).tolist())) == 60
    rng = np.random.default_rng(seed)
    reps, as_items, by_question = 1000, 0, 0
    for r in range(reps):
        pairs = _translated(rng, 60)
        as_items += pooled_test(pairs)[1] < 0.05
        test, p, _, _, n = pooled_test(pairs, keys, seed=r)
        by_question += p < 0.05
        assert test == "sign-flip (pooled, by question)" and n == 660
    print(f"{split}: pooled test rejections, no true difference, {reps} reps: as items {as_items / reps:.3f}, "
          f"by question {by_question / reps:.3f}")
    assert as_items / reps > 0.15, as_items / reps
    assert by_question / reps <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps), by_question / reps
    pairs = _translated(np.random.default_rng(3), 60, drop=1.5)
    base = {t: _scores(a) for t, (a, _) in zip(tasks, pairs, strict=True)}
    cand = {t: _scores(b) for t, (_, b) in zip(tasks, pairs, strict=True)}
    clusters = {t: dict(enumerate(k)) for t, k in zip(tasks, keys, strict=True)}
    result = compare(base, cand, tolerance=1.0, clusters=clusters)
    assert result.pooled.test == "sign-flip (pooled, by question)"
    assert result.pooled.failed and not result.passed and result.pooled.diff < -0.15, result.pooled


def test_tasks_of_one_item_get_the_sign_flip_test_of_their_differences_not_2_to_the_1_minus_n() -> None:
    """--limit 1 on a suite of continuous scores: no task has a within-task variance, but the differences differ
    from task to task (8 down 0.5, 6 up 0.4), so the pooled p is the exact sign-flip p over the 14 items (0.417 by
    enumeration), not 2^(1-14), which failed the suite."""
    import itertools

    d = np.array([-0.5] * 8 + [0.4] * 6)
    exact = np.mean([abs(np.dot(s, d)) >= abs(d.sum()) - 1e-12 for s in itertools.product([-1, 1], repeat=d.size)])
    base = {f"t{i:02d}": {0: 0.5} for i in range(d.size)}
    result = compare(base, {t: {0: 0.5 + x} for t, x in zip(base, d, strict=True)})
    assert result.pooled is not None and result.pooled.p_value == pytest.approx(exact)
    assert result.passed
    same = compare(base, {t: {0: 0.1} for t in base}).pooled  # every item 0.4 down: still 2^(1-n)
    assert same is not None and same.p_value == 2.0 ** (1 - d.size) and same.failed


def _equal_models(rng: np.random.Generator, reps: int, tasks: int, n: int, drop: float = 0.0) -> np.ndarray:
    """(reps, tasks, 2, n) 0/1 scores of a baseline and a candidate on n documents per task: a document's difficulty
    (logit N(0.5, 1.5)) is shared by both models, each model has its own effect per document (N(0, 1.5)), the
    candidate's shifted `drop` logits down. drop 0: equal true accuracy, correlated pairs."""
    theta = rng.normal(0.5, 1.5, (reps, tasks, 1, n))
    shift = rng.normal(0.0, 1.5, (reps, tasks, 2, n)) - np.array([0.0, drop])[:, None]
    return (rng.random((reps, tasks, 2, n)) < 1 / (1 + np.exp(-(theta + shift)))).astype(float)


def _core_verdicts(scores: np.ndarray, alpha: float = 0.05, mdes: bool = False) -> tuple:
    """The gate's decision for one suite (tolerances 0) from its statistical core: per-task exact McNemar, the pooled
    test, Holm over both, 'drop and Holm p < alpha'; with `mdes`, the MDEs the gate reports (per task, pooled)."""
    from functools import cache

    from harness.analysis.gate import diff_sd, mde, pooled_test

    mcnemar = cache(mcnemar_exact)  # discordant counts repeat: one scipy call each
    pairs = [(t[0], t[1]) for t in scores]
    p = [mcnemar(int(np.sum(a > b)), int(np.sum(b > a))) for a, b in pairs]
    _, pp, pdiff, _, n = pooled_test(pairs)
    adj, m = holm([*p, pp]), len(pairs) + 1
    failed = [bool(np.mean(b - a) < 0 and q < alpha) for (a, b), q in zip(pairs, adj, strict=False)]
    if not mdes:
        return failed, bool(pdiff < 0 and adj[-1] < alpha)
    sd = float(np.sqrt(sum(len(a) * diff_sd(a, b) ** 2 for a, b in pairs) / n))
    return [mde(diff_sd(a, b), len(a), alpha, m) for a, b in pairs], mde(sd, n, alpha, m)


def test_equal_models_fail_at_most_alpha_and_a_drop_of_the_mde_is_found_80_percent_of_the_time() -> None:
    """2,000 simulated suites of 10 tasks x 200 documents, two models of equal true accuracy (correlated pairs): the
    gate (tolerances 0) fails at most alpha / 2 of them (it fails drops only; its tests are two-sided at alpha).
    A true drop of the MDE the gate reports (per task, and pooled over the suite) is found at least 80% of the time
    up to simulation error. The core's verdicts and MDEs are the gate's own (checked on the first suites)."""
    rng = np.random.default_rng(2024)
    reps, tasks, n, alpha = 2000, 10, 200, 0.05
    sims = _equal_models(rng, reps, tasks, n)
    for s in sims[:5]:  # compare() decides as the core does
        res = compare({f"t{j}": _scores(t[0]) for j, t in enumerate(s)}, {f"t{j}": _scores(t[1]) for j, t in
                      enumerate(s)}, tolerance=0.0, suite_tolerance=0.0)
        assert ([v.failed for v in res.verdicts], res.pooled.failed) == _core_verdicts(s)
        mdes, pooled_mde = _core_verdicts(s, mdes=True)
        assert [v.mde for v in res.verdicts] == pytest.approx(mdes) and res.pooled.mde == pytest.approx(pooled_mde)
    false_rate = np.mean([any(f) or p for f, p in map(_core_verdicts, sims)])
    bound = alpha / 2 + 2 * np.sqrt(alpha / 2 * (1 - alpha / 2) / reps)
    task_mde = float(np.mean([_core_verdicts(s, mdes=True)[0] for s in sims[:100]]))
    pooled_mde = float(np.mean([_core_verdicts(s, mdes=True)[1] for s in sims[:100]]))
    power_reps, se = 600, 2 * np.sqrt(0.8 * 0.2 / 600)
    found = {}
    for kind, logits in (("task", 1.12), ("pooled", 0.37)):  # logit drops whose accuracy drop is the MDE
        drops = _equal_models(rng, power_reps, tasks, n, logits)
        verdicts = [_core_verdicts(s) for s in drops]
        found[kind] = (float(np.mean(drops[:, :, 0] - drops[:, :, 1])),
                       float(np.mean([f for v in verdicts for f in v[0]]) if kind == "task" else
                             np.mean([v[1] for v in verdicts])))
    print(f"equal models, {reps} suites: false regressions {false_rate:.4f} (alpha {alpha}); per task MDE "
          f"{task_mde:.4f}, true drop {found['task'][0]:.4f} found {found['task'][1]:.3f}; pooled MDE "
          f"{pooled_mde:.4f}, true drop {found['pooled'][0]:.4f} found {found['pooled'][1]:.3f}")
    assert false_rate <= bound, false_rate
    assert abs(found["task"][0] - task_mde) < 0.01 and abs(found["pooled"][0] - pooled_mde) < 0.005, found
    assert found["task"][1] >= 0.8 - se and found["pooled"][1] >= 0.8 - se, found


def _plain_mean_se(pairs: list[tuple[np.ndarray, np.ndarray]], keys: list[np.ndarray] | None = None) -> float:
    """The stderr of the plain mean of the tasks' mean differences, by pandas: each item weighs 1 / (k n_t); by
    task, sqrt(sum_t var_t / n_t) / k; by question, the clustered sqrt(G / (G - 1) sum_g (S_g - W_g D)^2) (S_g, W_g:
    the question's weighted differences and weights, D the weighted total)."""
    import pandas as pd

    k = len(pairs)
    df = pd.concat([pd.DataFrame({"task": t, "d": b - a, "w": 1 / (k * len(a)),
                                  "q": keys[t] if keys is not None else [f"{t}#{i}" for i in range(len(a))]})
                    for t, (a, b) in enumerate(pairs)])
    if keys is None:
        return float(np.sqrt(sum(g["d"].var(ddof=1) / len(g) for _, g in df.groupby("task"))) / k)
    df["wd"] = df["w"] * df["d"]
    total = df["wd"].sum()
    by_q = df.groupby("q")[["wd", "w"]].sum()
    g = len(by_q)
    return float(np.sqrt(g / (g - 1) * ((by_q["wd"] - by_q["w"] * total) ** 2).sum()))


@pytest.mark.parametrize("shared", [False, True])
def test_a_plain_mean_suite_is_gated_on_the_plain_mean_of_its_task_differences(shared: bool) -> None:
    """A suite whose score is the plain mean of its task means (`aggregate.weight_by_size: false`): the pooled
    difference is that score's difference (each task weighs 1/k, not n_t/N), its interval the stderr of that
    difference. Tasks of 12, 60 and 400 items: the small one up 40 points, the large one down 3. Before, the pooled
    difference was the item-weighted mean (-3.0 points) where the suite score moved +8.7 points."""
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    sizes, moves = {"small": 12, "mid": 60, "large": 400}, {"small": 0.4, "mid": 0.0, "large": -0.03}
    base, cand = {}, {}
    for t, n in sizes.items():
        a = (rng.random(n) < 0.5).astype(float)
        b = np.where(rng.random(n) < 0.15, 1 - a, a)  # noise both ways
        up = np.flatnonzero(b == 0)[:round(moves[t] * n)] if moves[t] > 0 else []
        down = np.flatnonzero(b == 1)[:round(-moves[t] * n)] if moves[t] < 0 else []
        b[up], b[down] = 1.0, 0.0
        base[t], cand[t] = _scores(a), _scores(b)
    clusters = {t: {i: f"q{i}" if t != "large" else f"L{i}" for i in range(n)} for t, n in sizes.items()} \
        if shared else None  # small and mid ask the same first 12 questions
    pairs = [(np.array(list(base[t].values())), np.array(list(cand[t].values()))) for t in sorted(sizes)]
    keys = [np.array(list(clusters[t].values()), dtype=object) for t in sorted(sizes)] if shared else None
    plain = float(np.mean([np.mean(b - a) for a, b in pairs]))
    weighted = float(np.sum([np.sum(b - a) for a, b in pairs]) / sum(sizes.values()))
    assert plain - weighted > 0.1  # so the weighting matters to the verdict
    pooled = compare(base, cand, tolerance=1.0, clusters=clusters, weight_by_size=False).pooled
    se = (pooled.ci_high - pooled.ci_low) / 2 / norm.ppf(0.975)
    print(f"plain-mean suite (shared {shared}): pooled diff {pooled.diff:+.4f} (plain {plain:+.4f}, item-weighted "
          f"{weighted:+.4f}), stderr {se:.5f} (pandas {_plain_mean_se(pairs, keys):.5f}), {pooled.test}")
    assert pooled.diff == pytest.approx(plain, abs=1e-12)
    assert pooled.baseline == pytest.approx(np.mean([np.mean(a) for a, _ in pairs]), abs=1e-12)
    assert pooled.candidate == pytest.approx(np.mean([np.mean(b) for _, b in pairs]), abs=1e-12)
    assert se == pytest.approx(_plain_mean_se(pairs, keys), rel=1e-9)
    by_size = compare(base, cand, tolerance=1.0, clusters=clusters).pooled  # the default: as before
    assert by_size.diff == pytest.approx(weighted, abs=1e-12)


def test_a_plain_mean_suite_s_pooled_test_keeps_its_level() -> None:
    """No true difference, tasks of 10, 20, 40, 80 and 300 items weighed equally (weight_by_size: false): the pooled
    test of the plain mean (a sign-flip test of the weighted differences) rejects at most alpha = 5% up to
    simulation error (1,000 reps: 2 sd = 1.4 points); the gate's verdict on a suite (tolerances 0) fails at most
    alpha. Equal sizes give McNemar's test, as with weight_by_size: true."""
    from harness.analysis.gate import pooled_test

    rng = np.random.default_rng(17)
    sizes, reps, rejected, failed = (10, 20, 40, 80, 300), 1000, 0, 0
    for r in range(reps):
        pairs = []
        for n in sizes:
            p = rng.beta(2, 1.5, n)
            pairs.append(((rng.random(n) < p).astype(float), (rng.random(n) < p).astype(float)))
        test, p_value, *_ = pooled_test(pairs, seed=r, weight_by_size=False)
        rejected += p_value < 0.05
        if r < 200:
            base = {f"t{j}": _scores(a) for j, (a, _) in enumerate(pairs)}
            cand = {f"t{j}": _scores(b) for j, (_, b) in enumerate(pairs)}
            failed += not compare(base, cand, tolerance=0.0, suite_tolerance=0.0, weight_by_size=False).passed
    print(f"plain-mean suite, no true difference, {reps} reps: pooled rejections {rejected / reps:.3f}, "
          f"gate failures {failed}/200 ({test})")
    assert test == "sign-flip (pooled, tasks weighted equally)"
    assert rejected / reps <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / reps), rejected / reps
    assert binomtest(failed, 200).proportion_ci(0.95).low <= 0.05, failed
    same = [(np.array([1.0, 0, 1, 0]), np.array([0.0, 0, 1, 1])), (np.array([1.0, 1, 0, 0]), np.array([0.0, 1, 0, 0]))]
    assert pooled_test(same, weight_by_size=False)[:2] == pooled_test(same)[:2]
