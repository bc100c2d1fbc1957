"""process_docs for the lm-eval mgsm variants (splits lm_eval_*): our TSV rows (question, answer_number as text) as
the `juletxara/mgsm` test docs lm-eval's mgsm tasks read: `answer` None (a test question, so lm-eval's prompt puts
the question word first) and `answer_number` an integer (the Hub copy's int column: "2,125" is 2125)."""

from __future__ import annotations

from typing import Any


def _doc(row: dict[str, Any]) -> dict[str, Any]:
    return {"answer": None, "answer_number": int(row["answer_number"].replace(",", ""))}


def lm_eval_docs(dataset: Any) -> Any:
    import datasets

    docs = dataset.map(_doc)
    return docs.cast_column("answer_number", datasets.Value("int64"))  # map keeps the column's text type
