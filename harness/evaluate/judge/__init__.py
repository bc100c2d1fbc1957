"""LLM-as-judge suites (Vicuna-bench, MT-bench): answers from any backend, judged by any backend.

Modules: `data` (questions, references, judge prompts), `prompts` (judge prompts as FastChat's llm_judge builds
them), `parse` (ratings and verdicts out of judgment text), `chat` (chat generation over an lm-eval LM),
`runner` (the whole flow with caching and the store).
"""
