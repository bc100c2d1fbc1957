"""Chat generation over any lm-eval LM (hf, vllm, local-chat-completions): the model's own chat template,
greedy by default."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ChatGenerator:
    """Answers conversations with an lm-eval LM. `identity` names it in caches and provenance."""

    lm: Any  # lm_eval.api.model.LM
    identity: dict[str, Any]
    max_new_tokens: int = 1024
    temperature: float = 0.0

    def settings(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature}

    def generate(self, conversations: list[list[dict[str, str]]],
                 temperatures: list[float] | None = None) -> list[str]:
        """One answer per conversation; `temperatures` (one per conversation) overrides `temperature`; greedy
        below 1e-4, as FastChat."""
        if not conversations:
            return []
        from lm_eval.api.instance import Instance

        temps = temperatures or [self.temperature] * len(conversations)
        requests = [
            Instance("generate_until", {}, (self.lm.apply_chat_template(conv, True), self._kwargs(t)), i)
            for i, (conv, t) in enumerate(zip(conversations, temps, strict=True))
        ]
        return [out.strip() for out in self.lm.generate_until(requests)]

    def _kwargs(self, temperature: float) -> dict[str, Any]:
        sample = temperature >= 1e-4
        return {"until": [], "max_gen_toks": self.max_new_tokens, "do_sample": sample,
                **({"temperature": temperature} if sample else {})}
