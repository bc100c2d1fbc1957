"""Chat generation over any lm-eval LM (hf, vllm, local-chat-completions): the model's own chat template,
greedy by default."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

_PROBE = "harness-system-role-probe"


@dataclass
class ChatGenerator:
    """Answers conversations with an lm-eval LM. `identity` names it in caches and provenance."""

    lm: Any  # lm_eval.api.model.LM
    identity: dict[str, Any]
    max_new_tokens: int = 1024
    temperature: float = 0.0

    def settings(self, system: bool = False) -> dict[str, Any]:
        """What decides a text besides the conversation; `system`: the conversations open with a system message
        (judgments), whose place in the prompt then counts too."""
        folded = {"system_in_first_turn": True} if system and not self.system_role else {}
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, **folded}

    @cached_property
    def system_role(self) -> bool:
        """Whether the chat template shows a system message. lm-eval drops one a template rejects (Gemma's,
        Mistral-Instruct v0.1/v0.2's) or a template leaves it out silently."""
        probe = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "?"}]
        try:
            return _PROBE in str(self.lm.apply_chat_template(probe, True))
        except Exception:  # noqa: BLE001 - no chat template at all: generate() raises its own error
            return True

    def cut(self, conversations: list[list[dict[str, str]]]) -> list[bool]:
        """Which of these prompts lm-eval cuts from their start: on hf and vllm a prompt longer than the model's
        context less the new tokens loses its beginning (the judge's instructions, a first turn) with only a log
        line. An endpoint (openai) is never cut here: its server answers for its own context."""
        if self.identity.get("backend") not in ("hf", "vllm"):
            return [False] * len(conversations)
        room = int(self.lm.max_length) - self.max_new_tokens
        return [len(self.lm.tok_encode(self._prompt(c))) > room for c in conversations]

    def _prompt(self, conv: list[dict[str, str]]) -> Any:
        """The conversation in the chat template. Without a system role the system message opens the first user
        turn, as FastChat's templates for such models place it: FastChat's judge instructions and output format
        are in the system message of the pairwise and second-turn prompts, and must not be lost."""
        if conv and conv[0]["role"] == "system" and len(conv) > 1 and not self.system_role:
            system, first, *rest = conv
            conv = [{**first, "content": f"{system['content']}\n\n{first['content']}"}, *rest]
        return self.lm.apply_chat_template(conv, True)

    def generate(self, conversations: list[list[dict[str, str]]],
                 temperatures: list[float] | None = None) -> list[str]:
        """One answer per conversation; `temperatures` (one per conversation) overrides `temperature`; greedy
        below 1e-4, as FastChat."""
        if not conversations:
            return []
        from lm_eval.api.instance import Instance

        temps = temperatures or [self.temperature] * len(conversations)
        requests = [
            Instance("generate_until", {}, (self._prompt(conv), self._kwargs(t)), i)
            for i, (conv, t) in enumerate(zip(conversations, temps, strict=True))
        ]
        return [out.strip() for out in self.lm.generate_until(requests)]

    def _kwargs(self, temperature: float) -> dict[str, Any]:
        sample = temperature >= 1e-4
        return {"until": [], "max_gen_toks": self.max_new_tokens, "do_sample": sample,
                **({"temperature": temperature} if sample else {})}
