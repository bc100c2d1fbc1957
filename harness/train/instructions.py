"""Instruction data: a JSONL file of prompt/response pairs or chat messages, read into `Example`s.

    examples = read_instructions(Path("data.jsonl"))   # list[Example]; one-line errors name the line

Each line is one JSON object, either `{"prompt": ..., "response": ...}` or `{"messages": [{"role": "user",
"content": ...}, ..., {"role": "assistant", "content": ...}]}`. For messages, the last turn must be the
assistant's: it is the response; the earlier turns' contents, joined by a space, are the prompt. The loss is on
the response only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.hashing import hash_json

FIX = ('write one JSON object per line: {"prompt": "...", "response": "..."} or {"messages": [{"role": "user", '
       '"content": "..."}, {"role": "assistant", "content": "..."}]}')


@dataclass(frozen=True)
class Example:
    prompt: str
    response: str

    @property
    def pair(self) -> tuple[str, str]:
        return (self.prompt, self.response)

    @property
    def text(self) -> str:
        return f"{self.prompt} {self.response}".strip()


def _from_messages(messages: object, where: str) -> Example:
    if not isinstance(messages, list) or not messages:
        raise HarnessError(f"{where}: `messages` is not a non-empty list", FIX)
    turns = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
            raise HarnessError(f"{where}: a message lacks a string `role` or `content`", FIX)
        turns.append((m["role"], m["content"]))
    if turns[-1][0] != "assistant":
        raise HarnessError(f"{where}: the last message is not the assistant's", "end each conversation with "
                           "the assistant's answer (the response the model learns)")
    return Example(" ".join(c for _, c in turns[:-1]), turns[-1][1])


def _checked(example: Example, where: str) -> Example:
    if not example.response.strip():
        raise HarnessError(f"{where} has an empty response", "give every example a response to learn")
    return example


def parse_line(line: str, where: str) -> Example:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        raise HarnessError(f"{where} is not JSON", FIX) from None
    if not isinstance(row, dict):
        raise HarnessError(f"{where} is not a JSON object", FIX)
    if "messages" in row:
        return _checked(_from_messages(row["messages"], where), where)
    missing = [k for k in ("prompt", "response") if not isinstance(row.get(k), str)]
    if missing:
        raise HarnessError(f"{where} lacks a string {' and '.join(repr(k) for k in missing)}", FIX)
    return _checked(Example(row["prompt"], row["response"]), where)


def read_instructions(path: Path) -> list[Example]:
    """Every non-empty line of `path` as an Example; the first bad line stops with its number."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"cannot read the instruction file {path} ({type(exc).__name__})",
                           "pass a readable UTF-8 JSONL file") from None
    out = [parse_line(line, f"{path} line {n}") for n, line in enumerate(lines, 1) if line.strip()]
    if not out:
        raise HarnessError(f"the instruction file {path} has no examples", FIX)
    return out


def write_instructions(path: Path, examples: list[Example]) -> None:
    """Prompt/response JSONL, written next to `path` and moved into place."""
    from harness.atomic import write_text_atomic

    write_text_atomic(path, "".join(json.dumps({"prompt": e.prompt, "response": e.response}) + "\n" for e in examples))


def slice_hash(examples: list[Example]) -> str:
    """The identity of a training slice: its examples, in order."""
    return hash_json([e.pair for e in examples])
