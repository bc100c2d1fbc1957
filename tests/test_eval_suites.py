"""Every shipped lm-eval suite loads and runs end to end on a zoo model (one document per task: the wiring, the
prompts, the filters and the store, not the scores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.suites import list_suites, load_suite

LM_EVAL_SUITES = [s for s in list_suites() if load_suite(s).kind == "lm-eval" and not s.startswith("zoo_")]
# BBH generates up to 1024 tokens (lm-eval's bbh_cot_fewshot) after a 3-shot chain-of-thought prompt: more than
# the zoo's 512-token context.
TOO_LONG_FOR_THE_ZOO = {"bbh", "bbh_permuted"}


@pytest.mark.slow
@pytest.mark.parametrize("suite", [s for s in LM_EVAL_SUITES if s not in TOO_LONG_FOR_THE_ZOO])
def test_suite_runs_on_a_zoo_model(suite: str, zoo_family: Path, results: Path, store) -> None:
    from harness.evaluate.backends.base import BackendOptions
    from harness.evaluate.runner import EvalOptions, evaluate_model

    s = load_suite(suite)
    opts = EvalOptions(limit=1, backend_options=BackendOptions(batch_size=8, max_length=512))
    res = evaluate_model(str(zoo_family / "zoo-base"), suite, opts, store)
    assert res.status == "complete" and store.get_run(res.run_id).status == "complete"
    tasks = {sc.task for sc in res.scores}
    assert set(s.splits[s.default_split]) <= tasks
    samples = store.samples(res.run_id)
    assert set(samples["task"]) == set(s.splits[s.default_split])
    assert samples["prompt"].notna().all()


@pytest.mark.slow
def test_a_suite_too_long_for_the_model_fails_cleanly(zoo_family: Path, results: Path, store) -> None:
    from harness.errors import HarnessError
    from harness.evaluate.runner import EvalOptions, evaluate_model

    with pytest.raises(HarnessError, match="maximum sequence length") as info:
        evaluate_model(str(zoo_family / "zoo-base"), "bbh", EvalOptions(limit=1), store)
    assert "\n" not in info.value.line()
    (run,) = store.list_runs(status="failed")
    assert run.suite == "bbh" and store.scores(run.run_id) == []
