"""process_docs: our MMLU CSV rows (question, A, B, C, D, answer letter) as the `cais/mmlu` docs lm-eval's mmlu
task reads (question, choices, answer index). The data files stay byte-identical copies of the release."""

from __future__ import annotations

from typing import Any

LETTERS = "ABCD"


def _doc(row: dict[str, Any]) -> dict[str, Any]:
    return {"choices": [row[x] for x in LETTERS], "answer": LETTERS.index(row["answer"].strip())}


def mmlu_docs(dataset: Any) -> Any:
    import datasets

    docs = dataset.map(_doc, remove_columns=list(LETTERS))
    return docs.cast_column("answer", datasets.Value("int64"))  # map keeps the column's text type
