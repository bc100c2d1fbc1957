"""Log-likelihoods at the cost of the continuation (harness/evaluate/backends/hf_scoring.py) against lm-eval's own
HFLM, request by request: mmlu (one-token answers, contexts batched), 5-shot mmlu and few-shot prompts (a shared
prefix run once, the rest on its KV cache), answers of several tokens on a shared KV cache, rolling
log-likelihoods, and requests lm-eval truncates. Same model, same requests, both engines real.

Tolerance: 1e-5 absolute, or 2e-6 relative for sums over many tokens: lm-eval's HFLM differs from itself by up
to 3e-5 on a -26.7 rolling sum (1.1e-6 relative) between batch sizes 1 and 4 on the real model (float32 CPU
kernels block differently by shape). On the real model's 0-shot mmlu requests the two agree exactly; on its 5-shot
requests (prefix reuse) within 8.4e-6, where HFLM differs from itself by up to 7.2e-6 between batch sizes 1 and
16. On a second CPU kind (the machine of 2026-12-04) the 0-shot requests no longer agree exactly: HFLM differs from
itself by 7.6e-6 between batch sizes 1 and 4, and ours from HFLM by up to 1.0e-5; the absolute floor is 2e-5
(TOLERANCE), twice that noise: issue #19's 1e-5 is at the floating-point noise of these kernels, not a margin."""

from __future__ import annotations

from pathlib import Path

import pytest

CONTEXTS = ["The capital of France is", "Question: what is 2 + 2?\nAnswer:", "Once upon a time, there was a"]
TOLERANCE = 2e-5  # absolute, on one log-likelihood: the kernels' noise across CPU kinds (module docstring)
ANSWERS = [" Paris.", " a city in Europe with many museums", " 4", " four, obviously", " B", " dragon in a cave"]


@pytest.fixture(autouse=True)
def _threads() -> None:
    import torch

    torch.set_num_threads(1)


def mmlu_requests(tasks: tuple[str, ...], limit: int, split: str | None = None) -> list:
    """lm-eval's own Instances for some mmlu tasks of the suite shipped in suites/mmlu."""
    from lm_eval.tasks import TaskManager

    from harness.evaluate.plan import make_plan, task_configs

    plan = make_plan("mmlu", split, limit, None, list(tasks))
    out = []
    for task in TaskManager(include_defaults=False).load(task_configs(plan))["tasks"].values():
        task.build_all_requests(limit=limit, rank=0, world_size=1)
        out += task.instances
    return out


def free_requests() -> tuple[list, list]:
    from lm_eval.api.instance import Instance

    pairs = [(c, a) for c in CONTEXTS for a in ANSWERS]
    ll = [Instance("loglikelihood", {}, pair, i) for i, pair in enumerate(pairs)]
    rolling = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate([*CONTEXTS, " ".join(ANSWERS) * 3])]
    return ll, rolling


def both(folder: Path, **kw: object) -> tuple:
    from lm_eval.models.huggingface import HFLM

    from harness.evaluate.backends.hf_scoring import ContinuationHFLM

    args = {"pretrained": str(folder), "device": "cpu", "dtype": "float32", "batch_size": 4, **kw}
    return HFLM(**args), ContinuationHFLM(**args)


def assert_same(ours: list, theirs: list, rel: float = 0.0) -> None:
    assert len(ours) == len(theirs) > 0
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        a_ll, b_ll = (a[0], b[0]) if isinstance(a, tuple) else (a, b)
        assert a_ll == pytest.approx(b_ll, rel=rel, abs=TOLERANCE), (i, a, b)
        if isinstance(a, tuple):
            assert a[1] == b[1], (i, a, b)


def few_shot_requests(n: int = 4, answers: tuple[str, ...] = (" 1", " 3", " 5", " 9")) -> list:
    """n questions after one few-shot prompt (and one question alone), each with the same answers: what prefix
    reuse is for."""
    from lm_eval.api.instance import Instance

    shots = "".join(f"Question: what is {a} + {b}?\nAnswer: {a + b}\n\n" for a, b in [(2, 2), (3, 5), (1, 7), (4, 4)])
    contexts = [f"{shots}Question: what is {k} + {k + 1}?\nAnswer:" for k in range(n)] + ["Question: alone\nAnswer:"]
    return [Instance("loglikelihood", {}, (c, a), i) for i, (c, a) in enumerate(
        (c, a) for c in contexts for a in answers)]


def shared_groups(lm, reqs: list) -> list:
    """The prefix groups the scorer forms for these requests' contexts (as lm-eval encodes them)."""
    from harness.evaluate.backends.hf_scoring import prefix_groups

    return prefix_groups(sorted({tuple(lm._encode_pair(*r.args)[0]) for r in reqs}))[0]


def check_model(folder: Path, mmlu: tuple[str, ...], limit: int, shots: tuple[str, ...] = ()) -> None:
    lm_eval_lm, ours = both(folder)
    reqs = mmlu_requests(mmlu, limit)
    assert 1 in {len(ours.tok_encode(r.args[1])) for r in reqs}  # letters: the batched one-token path
    assert shared_groups(ours, reqs) == []  # 0-shot: no prefix long enough to share, the batched path alone
    assert_same(ours.loglikelihood(reqs, disable_tqdm=True), lm_eval_lm.loglikelihood(reqs, disable_tqdm=True), 2e-6)
    shot_reqs = mmlu_requests(shots, limit, "oll_v1") if shots else few_shot_requests()
    assert len(shared_groups(ours, shot_reqs)) == max(1, len(shots))  # one shared prompt per subject
    got = ours.loglikelihood(shot_reqs, disable_tqdm=True)
    assert_same(got, lm_eval_lm.loglikelihood(shot_reqs, disable_tqdm=True), 2e-6)
    long_reqs = few_shot_requests(3, (" 12 apples", " nine, obviously", " 7"))  # a shared prefix, then a KV cache
    assert max(len(ours.tok_encode(r.args[1])) for r in long_reqs) > 2 and len(shared_groups(ours, long_reqs)) == 1
    got = ours.loglikelihood(long_reqs, disable_tqdm=True)
    assert_same(got, lm_eval_lm.loglikelihood(long_reqs, disable_tqdm=True), 2e-6)
    ll, rolling = free_requests()
    assert max(len(ours.tok_encode(r.args[1])) for r in ll) > 3  # answers of several tokens: the KV-cache path
    assert_same(ours.loglikelihood(ll, disable_tqdm=True), lm_eval_lm.loglikelihood(ll, disable_tqdm=True), 2e-6)
    got = ours.loglikelihood_rolling(rolling, disable_tqdm=True)
    assert_same(got, lm_eval_lm.loglikelihood_rolling(rolling, disable_tqdm=True), 2e-6)


def test_scores_equal_lm_evals_on_a_zoo_model(zoo_family: Path) -> None:
    check_model(zoo_family / "zoo-math", ("mmlu_marketing", "mmlu_anatomy"), 3)


@pytest.mark.slow
def test_scores_equal_lm_evals_on_the_real_model(real_model) -> None:
    check_model(real_model.folder, ("mmlu_marketing",), 2, ("mmlu_5shot_marketing", "mmlu_5shot_nutrition"))


def test_requests_lm_eval_truncates_take_lm_evals_path(tiny_llama) -> None:
    """Context + continuation longer than the window: lm-eval cuts from the left; so do we (its own code)."""
    from lm_eval.api.instance import Instance

    lm_eval_lm, ours = both(tiny_llama("t", max_positions=64), max_length=16)
    long = " ".join(["alpha beta gamma"] * 12)
    reqs = [Instance("loglikelihood", {}, (c, a), i) for i, (c, a) in enumerate(
        [(long, " delta epsilon"), (long, " zeta"), ("short one", " two three")])]
    assert len(ours.tok_encode(long)) > 16
    assert_same(ours.loglikelihood(reqs, disable_tqdm=True), lm_eval_lm.loglikelihood(reqs, disable_tqdm=True), 2e-6)


def test_a_forward_holds_a_bounded_number_of_tokens() -> None:
    """The batches of contexts: longest first, at most max_rows rows and TOKENS_PER_FORWARD padded tokens."""
    from harness.evaluate.backends.hf_scoring import TOKENS_PER_FORWARD, _batches

    lengths = [5000, 3000, 900, 900, 900, 900, 800, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 1]
    batches = list(_batches(list(range(len(lengths))), lengths, max_rows=16))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or len(b) * lengths[b[0]] <= TOKENS_PER_FORWARD  # a lone long context still runs
    assert [len(b) for b in batches][:3] == [1, 1, 4]


def test_contexts_that_share_a_long_prefix_are_grouped() -> None:
    """Sorted neighbours sharing >= MIN_SHARED tokens form a group; each member keeps a token of its own; a group
    run is split where that saves more tokens (6 shares 65 tokens with 3, 0 and 2, which share 191); short shared
    beginnings are not grouped."""
    from harness.evaluate.backends.hf_scoring import MIN_SHARED, prefix_groups

    shot, other = tuple(range(100, 100 + 3 * MIN_SHARED)), tuple(range(900, 900 + 2 * MIN_SHARED))
    contexts = [shot + (1, 2), (7,) * 5, shot + (3,), shot, other + (5,), other + (6, 6), shot[:MIN_SHARED + 1] + (9,),
                shot[:MIN_SHARED - 1] + (8,) * 50, (7,) * 5 + (4,)]
    groups, alone = prefix_groups(contexts)
    assert sorted((shared, sorted(members)) for shared, members in groups) == [(len(other), [4, 5]),
                                                                               (len(shot) - 1, [0, 2, 3])]
    assert sorted(alone) == [1, 6, 7, 8]
    for shared, members in groups:
        assert all(len(contexts[i]) > shared and contexts[i][:shared] == contexts[members[0]][:shared]
                   for i in members)
    assert prefix_groups([]) == ([], [])
