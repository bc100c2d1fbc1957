"""The two lm-eval fixed costs harness pays once: compiled templates and the environment description."""

from __future__ import annotations

import json
from pathlib import Path


def test_templates_render_the_same_and_the_original_comes_back() -> None:
    import lm_eval.utils

    from harness.evaluate.lm_eval_speed import faster_lm_eval

    original = lm_eval.utils.apply_template
    doc = {"question": "2 + 2 ?", "choices": ["3", "4"], "answer": 1}
    templates = ["{{question.strip()}}\nAnswer:", "{{choices[answer]}}", "{{question | regex_replace('\\d', '#')}}"]
    expected = [original(t, doc) for t in templates]
    with faster_lm_eval():
        assert lm_eval.utils.apply_template is not original
        assert [lm_eval.utils.apply_template(t, doc) for t in templates] * 2 == expected * 2
    assert lm_eval.utils.apply_template is original


def test_environment_description_is_computed_once_per_environment(results: Path) -> None:
    import lm_eval.evaluator

    from harness.evaluate import lm_eval_speed

    calls = []

    def counted() -> str:
        calls.append(1)
        return "described"

    lm_eval_speed._pretty_env_info.cache_clear()
    with lm_eval_speed.faster_lm_eval():
        first = lm_eval.evaluator.add_env_info
    assert lm_eval_speed._pretty_env_info(counted) == "described"
    lm_eval_speed._pretty_env_info.cache_clear()  # a new process: only the memo file is left
    assert lm_eval_speed._pretty_env_info(counted) == "described"
    assert len(calls) == 1
    memo = json.loads((results / "cache" / "env_info.json").read_text())
    assert memo == {lm_eval_speed._environment_key(): "described"}
    assert first is not lm_eval.evaluator.add_env_info  # restored after the block
    lm_eval_speed._pretty_env_info.cache_clear()
