"""process_docs for GSM-Plus testmini: one task per perturbation type, and the 200 GSM8K seed questions."""

from __future__ import annotations

from typing import Any


def _only(kind: str) -> Any:
    def process(dataset: Any) -> Any:
        return dataset.filter(lambda doc: doc["perturbation_type"] == kind)

    process.__name__ = kind.replace(" ", "_").replace("-", "_")
    return process


numerical_substitution = _only("numerical substitution")
digit_expansion = _only("digit expansion")
integer_decimal_fraction_conversion = _only("integer-decimal-fraction conversion")
adding_operation = _only("adding operation")
reversing_operation = _only("reversing operation")
problem_understanding = _only("problem understanding")
distraction_insertion = _only("distraction insertion")


def seeds(dataset: Any) -> Any:
    """The 300 distinct seed (original GSM8K) questions, in first-seen order, as {question, answer} docs."""
    import datasets

    seen: dict[str, str] = {}
    for doc in dataset:
        seen.setdefault(doc["seed_question"], str(doc["seed_answer"]))
    return datasets.Dataset.from_list([{"question": q, "answer": a} for q, a in seen.items()])
