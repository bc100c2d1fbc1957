"""How a candidate's run differs from the baseline file it is checked against: suite, backend and settings, documents
only on one side, document ids that hold other content. `harness check` refuses on the first (`refusal`), or with
--allow-mismatch gates what the two have in common and lists each one it let through (`allowed`, `to_dict`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Mismatch:
    """One difference: its task (None for the whole run), kind (suite | backend | setting | documents | doc_hash),
    its facts (counts of documents, or the baseline's and the candidate's value), and its words."""

    kind: str
    refusal: str  # the one-line error naming it, where it stops the check
    allowed: str  # the report's line, where --allow-mismatch let it through
    task: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "kind": self.kind, **self.facts, "text": self.allowed}


def _brief(value: Any) -> Any:
    """A hash (data_hash, task_definitions) by its first 12 characters, as the report names doc_hashes."""
    return value[:12] if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32,}", value) else value


def _value(kind: str, name: str, then: Any, now: Any, label: str) -> Mismatch:
    return Mismatch(kind, f"{label} {then!r} (baseline) vs {now!r}" + (" (now)" if kind == "suite" else ""),
                    f"{label} {_brief(then)!r} (baseline) vs {_brief(now)!r} (this run)",
                    facts={"field": name, "baseline": then, "candidate": now})


def run_mismatches(doc: dict[str, Any], run: Any) -> list[Mismatch]:
    """The suite (version, data hash, split, name), backend and score settings of the baseline file vs the run."""
    out = []
    want = doc["suite"]
    for key, have in (("version", run.suite_version), ("data_hash", run.data_hash), ("split", run.split)):
        if str(want.get(key)) != str(have):
            out.append(_value("suite", key, want.get(key), have, f"suite {key}"))
    if want["name"] != run.suite:
        out.append(_value("suite", "name", want["name"], run.suite, "suite"))
    if doc["backend"]["name"] != run.backend:
        out.append(_value("backend", "name", doc["backend"]["name"], run.backend, "backend"))
    settings = {k: v for k, v in run.settings.items() if k not in ("device", "base_url")}
    for key in sorted(set(doc["settings"]) | set(settings)):
        if doc["settings"].get(key) != settings.get(key):
            out.append(_value("setting", key, doc["settings"].get(key), settings.get(key), f"setting {key}"))
    return out


def other_documents(doc: dict[str, Any], cand: dict[str, dict[str, Any]]) -> list[Mismatch]:
    """Tasks the candidate scored on other documents than the baseline (a baseline edited by hand, data grown or
    cut since, unscorable samples): the gate judges only the documents both have."""
    out = []
    for task, d in sorted(doc["tasks"].items()):
        have = set(cand.get(task, {}).get("samples", {}))
        want = {int(k) for k in d["samples"]}
        if not have or have == want:
            continue
        common, only_then, only_now = len(have & want), len(want - have), len(have - want)
        sides = ([f"{only_then} baseline documents not in this run"] if only_then else []) + (
            [f"{only_now} documents of this run not in the baseline"] if only_now else [])
        out.append(Mismatch(
            "documents", f"task {task}: the candidate scored {common} of the baseline's {len(want)} documents "
            f"(and {only_now} others)", f"{task}: {' and '.join(sides)}, compared on the {common} common", task,
            {"baseline_only": only_then, "run_only": only_now, "common": common}))
    return out


def other_contents(doc: dict[str, Any], cand: dict[str, dict[str, Any]]) -> list[Mismatch]:
    """Tasks where a document id holds another document than the baseline's (their doc_hashes differ: data reordered
    or edited past the data hash): the gate pairs by doc_id, so it would compare two questions. Refused rather than
    paired by hash: a task may hold one document twice (mmlu_redux's us_foreign_policy), and a moved document can be
    prompted with other few-shot examples (lm-eval draws them in document order). Baselines saved without
    doc_hashes are paired by doc_id."""
    out = []
    for task, d in sorted(doc["tasks"].items()):
        now = cand.get(task, {}).get("doc_hashes", {})
        then = {int(k): h for k, h in d.get("doc_hashes", {}).items() if int(k) in now}
        differ = sorted(k for k, h in then.items() if h != now[k])
        if not differ:
            continue
        first = differ[0]
        out.append(Mismatch(
            "doc_hash", f"task {task}: {len(differ)} of the baseline's {len(d['samples'])} documents hold other "
            f"content now (document {first}: doc_hash {then[first][:12]} (baseline) vs {now[first][:12]})",
            f"{task}: {len(differ)} of the {len(then)} common documents hold other content than the baseline's "
            f"(document {first} first), paired by document id all the same", task,
            {"differ": len(differ), "common": len(then), "first": first}))
    return out
