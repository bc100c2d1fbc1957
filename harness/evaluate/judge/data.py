"""The questions, reference answers and judge prompts of a judge suite, read from its data folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError

# Categories graded against a reference answer (as FastChat's llm_judge does).
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")


@dataclass(frozen=True)
class Question:
    question_id: int
    category: str
    turns: tuple[str, ...]
    references: tuple[str, ...] = ()

    @property
    def needs_reference(self) -> bool:
        return self.category in REFERENCE_CATEGORIES and bool(self.references)

    def conversation(self, replies: list[str] | tuple[str, ...], turn: int) -> list[dict[str, str]]:
        """What the model answers at `turn` (from 1): the question's turns up to it, each earlier one followed by
        the model's own reply to it."""
        messages = []
        for i in range(turn):
            messages.append({"role": "user", "content": self.turns[i]})
            if i < turn - 1:
                messages.append({"role": "assistant", "content": replies[i]})
        return messages


def question_turns(questions: list[Question]) -> list[tuple[Question, int]]:
    """Every (question, turn) of these questions, turns from 1: one judgment (and one stored sample) each."""
    return [(q, t) for q in questions for t in range(1, len(q.turns) + 1)]


@dataclass(frozen=True)
class JudgePrompt:
    name: str
    kind: str  # single | pairwise
    system_prompt: str
    template: str
    output_format: str


@dataclass(frozen=True)
class JudgeData:
    questions: tuple[Question, ...]
    prompts: dict[str, JudgePrompt] = field(default_factory=dict)


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise HarnessError(f"missing data file {path}", "restore it from the repository (git checkout -- suites/)")
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise HarnessError(
            f"{path} is not valid JSON lines (line {exc.lineno})", "restore it from the repository"
        ) from exc


def load_judge_data(data_dir: Path, questions_file: str = "question.jsonl",
                    references_file: str = "reference_answer/gpt-4.jsonl",
                    prompts_file: str = "judge_prompts.jsonl") -> JudgeData:
    refs: dict[int, tuple[str, ...]] = {}
    if (data_dir / references_file).is_file():
        for row in _jsonl(data_dir / references_file):
            refs[int(row["question_id"])] = tuple(row["choices"][0]["turns"])
    questions = tuple(
        Question(int(q["question_id"]), q["category"], tuple(q["turns"]), refs.get(int(q["question_id"]), ()))
        for q in _jsonl(data_dir / questions_file)
    )
    prompts = {
        p["name"]: JudgePrompt(p["name"], p["type"], p["system_prompt"], p["prompt_template"], p["output_format"])
        for p in _jsonl(data_dir / prompts_file)
    }
    return JudgeData(questions, prompts)
