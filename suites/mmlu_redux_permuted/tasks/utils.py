"""process_docs for the `ok` split: drop items the MMLU-Redux annotators flagged (error_type other than "ok")."""

from __future__ import annotations

from typing import Any

KEEP = {"ok", "dev"}  # "dev" marks the MMLU dev exemplars (not annotated; they stay the 5-shot context)


def ok_or_dev(dataset: Any) -> Any:
    return dataset.filter(lambda doc: doc["error_type"] in KEEP)
