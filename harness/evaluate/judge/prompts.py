"""Judge prompts, filled in the way FastChat's llm_judge fills them.

Single-answer grading rates one answer (turn 1) or a whole two-turn conversation (turn 2) from 1 to 10;
pairwise comparison asks which of two answers is better. Questions in the reference categories are graded against
the reference answer (the `*-math-*` prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.evaluate.judge.data import JudgeData, JudgePrompt, Question


@dataclass(frozen=True)
class JudgeRequest:
    prompt_name: str
    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return [*msgs, {"role": "user", "content": self.user}]


def _prompt_name(kind: str, question: Question, turn: int) -> str:
    base = "single" if kind == "single" else "pair"
    ref = "math-v1" if question.needs_reference else ("v1" if kind == "single" else "v2")
    return f"{base}-{ref}" + ("-multi-turn" if turn == 2 else "")


def _fields(question: Question, turn: int) -> dict[str, str]:
    out: dict[str, str] = {}
    if turn == 1:
        out["question"] = question.turns[0]
        if question.needs_reference:
            out["ref_answer_1"] = question.references[0]
    else:
        out["question_1"], out["question_2"] = question.turns[0], question.turns[1]
        if question.needs_reference:
            out["ref_answer_1"], out["ref_answer_2"] = question.references[0], question.references[1]
    return out


def _fill(prompt: JudgePrompt, fields: dict[str, str]) -> JudgeRequest:
    return JudgeRequest(prompt.name, prompt.system_prompt, prompt.template.format(**fields))


def single_request(data: JudgeData, question: Question, answers: list[str], turn: int) -> JudgeRequest:
    """Rate the model's answer to turn 1, or its whole conversation for turn 2."""
    fields = _fields(question, turn)
    if turn == 1:
        fields["answer"] = answers[0]
    else:
        fields["answer_1"], fields["answer_2"] = answers[0], answers[1]
    return _fill(data.prompts[_prompt_name("single", question, turn)], fields)


def pairwise_request(
    data: JudgeData, question: Question, answers_a: list[str], answers_b: list[str], turn: int
) -> JudgeRequest:
    """Compare assistant A's and assistant B's answers (turn 1) or conversations (turn 2)."""
    fields = _fields(question, turn)
    if turn == 1:
        fields["answer_a"], fields["answer_b"] = answers_a[0], answers_b[0]
    else:
        fields["answer_a_1"], fields["answer_a_2"] = answers_a[0], answers_a[1]
        fields["answer_b_1"], fields["answer_b_2"] = answers_b[0], answers_b[1]
    return _fill(data.prompts[_prompt_name("pairwise", question, turn)], fields)
