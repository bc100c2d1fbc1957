"""Which question an item poses where a suite asks one question in several forms: the seed a twin map ties it to.

MGSM asks each of its 250 problems in 11 languages (mgsm's `xling` map: row i of every language translates English
row i; gsm8k's `mgsm_en` map: English row i is a GSM8K test problem), GSM-Plus each of its 300 GSM8K seeds under 7
perturbations (gsm8k's `plus` map). The twin maps (harness/twinmaps.py) of every suite whose twin side is the
split asked about tie its items to their seeds; items tied together, directly or through a seed they share (the 7
rewrites of one GSM8K problem), pose one question, named by the seed at the end of the chain: "gsm8k/gsm8k_cot/17"
for the 11 translations of GSM8K problem 17. So do items with the same doc_hash (zoo_math's multiple choice and
generation score the same documents); a question no map ties is named by its doc_hash, as before maps were read.

A split whose tasks ask another split's questions (suite.yaml `same_questions`: mgsm's direct and lm-eval's own
lm_eval_* splits ask cot's 250 problems, task i of each in the same language, document for document) is named as
that split's items are: its items take the names of the other split's tasks before the maps are followed, so
"gsm8k/gsm8k_cot/17" names row 17's problem on every mgsm split. No twin map covers those splits: a map would also
be an overfitting comparison (8-shot CoT English against 0-shot direct Bengali), which `same_questions` never is.

A map that does not load (a broken file, another suite's broken suite.yaml) or does not match the items scored (an
item beyond its size: other data than it was built from) is left out with a warning: those items keep their
doc_hash, as before the maps were read, rather than stopping a check or a search at a problem of the map's own.

    question_keys("mgsm", "cot", {("mgsm_8shot_cot_bn", 0): doc_hash, ...})  # {(task, doc): "gsm8k/gsm8k_cot/0"}
    question_keys("mgsm", "lm_eval_direct", {("mgsm_direct_bn", 0): doc_hash, ...})  # the same names
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.suite_schema import SuiteSpec, TwinSpec
    from harness.twinmaps import TwinMap

log = logging.getLogger(__name__)
Node = tuple[str, str, int]  # suite, task, doc id; ("#", doc_hash, 0) for a document's hash (no suite has a '#')


def question_keys(suite: str | None, split: str | None, hashes: Mapping[tuple[str, int], str | None],
                  root: Path | None = None) -> dict[tuple[str, int], str]:
    """{(task, doc): the question it poses} for a run of suite:split (None: its default split) that scored these
    items, `hashes` their doc_hash: items that share a doc_hash or that twin maps tie together are one question,
    named by the seed of its maps ("gsm8k/gsm8k_cot/17"), else by its doc_hash; an item with neither is left out.
    A split that asks the questions of another (suite.yaml `same_questions`) is named as that split's items are."""
    from harness.suites import readable_specs

    specs = readable_specs(root) if suite else {}
    split, asked = _asked(specs, suite, split)
    node = {(t, d): (suite or "", asked.get(t, t), d) for t, d in hashes}
    scored: dict[str, int] = {}
    for _, task, doc in node.values():
        scored[task] = max(scored.get(task, 0), doc + 1)
    edges: list[tuple[Node, Node]] = []
    for owner, tm in _maps(specs, suite, split) if suite else []:
        if _matches(tm, suite, owner, scored):
            twin = zip(tm.pairs["twin_task"], tm.pairs["twin_doc"], strict=True)
            public = zip(tm.pairs["public_task"], tm.pairs["public_doc"], strict=True)
            edges += [((suite, t, int(d)), (owner, p, int(s))) for (t, d), (p, s) in zip(twin, public, strict=True)]
    derived = {twin for twin, _ in edges}
    edges += [(node[item], ("#", h, 0)) for item, h in hashes.items() if h is not None]
    names: dict[Node, str] = {}
    for nodes in components(edges):
        names.update(dict.fromkeys(nodes, _name(nodes, derived)))
    return {item: names[n] for item, n in node.items() if n in names}


def _asked(specs: Mapping[str, tuple[Path, SuiteSpec]], suite: str | None, split: str | None,
           ) -> tuple[str | None, dict[str, str]]:
    """The split whose questions suite:split asks (itself unless suite.yaml's `same_questions` names another) and
    {task of the split: the task of that split whose documents it asks}, task for task in suite.yaml's order."""
    spec = specs[suite][1] if suite in specs else None
    asked = spec.same_questions.get(split or spec.default_split) if spec else None
    if spec is None or asked is None:
        return split, {}
    return asked, dict(zip(spec.splits[split or spec.default_split], spec.splits[asked], strict=True))


def _name(nodes: list[Node], derived: set[Node]) -> str:
    """A question's name: where maps tie its items, its seed (the node no map derives from another, the smallest
    should there be several), else the doc_hash its items share."""
    if not derived.intersection(nodes):
        return next(n[1] for n in nodes if n[0] == "#")
    mapped = [n for n in nodes if n[0] != "#"]
    return "/".join(map(str, min([n for n in mapped if n not in derived] or mapped)))


def components(edges: Iterable[tuple[Node, Node]]) -> list[list[Node]]:
    """The connected components of an undirected graph given by its edges (union-find)."""
    parent: dict[Node, Node] = {}

    def find(x: Node) -> Node:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[Node, list[Node]] = {}
    for node in list(parent):
        members.setdefault(find(node), []).append(node)
    return list(members.values())


def _maps(specs: Mapping[str, tuple[Path, SuiteSpec]], suite: str, split: str | None) -> list[tuple[str, TwinMap]]:
    """(owner, map) of every twin relation whose twin side is suite:split and whose map loads."""
    if suite not in specs:
        return []
    default = specs[suite][1].default_split
    out = []
    for owner, (path, spec) in sorted(specs.items()):
        for kind, twin in sorted(spec.twins.items()):
            ref, _, ref_split = twin.ref.partition(":")
            if twin.map and ref == suite and (ref_split or default) == (split or default):
                tm = _load(path.parent / twin.map, owner, kind, twin)
                out += [(owner, tm)] if tm is not None else []
    return out


def _load(path: Path, owner: str, kind: str, twin: TwinSpec) -> TwinMap | None:
    from harness.twinmaps import load_map

    try:
        return load_map(path, owner, kind, twin)
    except HarnessError as exc:
        log.warning("%s (its items are counted by their doc_hash)", exc.line())
        return None


def _matches(tm: TwinMap, suite: str, owner: str, scored: Mapping[str, int]) -> bool:
    """Whether every scored task the map knows stays within the map's size for it (the data it was built from)."""
    sizes = {**(tm.public_sizes if owner == suite else {}), **tm.twin_sizes}
    beyond = sorted(t for t, n in scored.items() if t in sizes and n > sizes[t])
    if beyond:
        log.warning("twin map %s:%s knows %d items of %s, %d were scored: other data, its items are counted by "
                    "their doc_hash", tm.suite, tm.kind, sizes[beyond[0]], beyond[0], scored[beyond[0]])
    return not beyond
