"""The merge lineage in memory: one pass over the lineage table, then ancestry, depth, roots, chains and exposure
for thousands of models without a query per model (the store's recursive SQL answers one model at a time)."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import pandas as pd

    from harness.store import Store

T = TypeVar("T")


@dataclass
class Graph:
    """Parent and child lists of every model that has lineage edges (weights kept per edge)."""

    parents: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tuples of names: the cyclic collector stops
    children: dict[str, tuple[str, ...]] = field(default_factory=dict)  # tracking them (20,000 at 10,000 models)
    weights: dict[tuple[str, str], float | None] = field(default_factory=dict)
    _order: tuple[frozenset[str], list[str]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_edges(cls, edges: pd.DataFrame) -> Graph:
        parents: dict[str, list[str]] = defaultdict(list)
        children: dict[str, list[str]] = defaultdict(list)
        weights: dict[tuple[str, str], float | None] = {}
        cols = (edges["child_id"].tolist(), edges["parent_id"].tolist(), edges["weight"].tolist())
        for child, parent, weight in zip(*cols, strict=True):
            if parent not in parents[child]:
                parents[child].append(parent)
                children[parent].append(child)
            weights[(child, parent)] = None if weight != weight else weight  # NaN -> None
        return cls({k: tuple(v) for k, v in parents.items()}, {k: tuple(v) for k, v in children.items()}, weights)

    def topological(self, nodes: Iterable[str]) -> list[str]:
        """Parents before children (Kahn); nodes in a cycle, which a sane store never has, come last. The last order
        is kept: depths, roots and exposure of the same models each need it."""
        nodes = frozenset(nodes) | self.parents.keys() | self.children.keys()
        if self._order is not None and self._order[0] == nodes:
            return self._order[1]
        indeg = {n: len(self.parents.get(n, ())) for n in nodes}
        queue = deque(sorted(n for n, d in indeg.items() if d == 0))
        order: list[str] = []
        while queue:
            n = queue.popleft()
            order.append(n)
            for c in self.children.get(n, ()):
                indeg[c] -= 1
                if indeg[c] == 0:
                    queue.append(c)
        seen = set(order)
        order += sorted(n for n in nodes if n not in seen)
        self._order = (nodes, order)
        return order

    def depths(self, nodes: Iterable[str]) -> dict[str, int]:
        """Merge depth: 0 without parents, else 1 + the deepest parent's depth (as Store.depth)."""
        depth: dict[str, int] = {}
        for n in self.topological(nodes):
            ps = self.parents.get(n, ())
            depth[n] = 1 + max((depth.get(p, 0) for p in ps), default=-1)
        return depth

    def merge_depths(self, nodes: Iterable[str], merges: set[str]) -> dict[str, int]:
        """Merges of merges: 0 without parents; a merge (in `merges`, or with several parents) adds 1 to its
        deepest parent's count, a fine-tune (one parent, no merge recipe) keeps it."""
        depth: dict[str, int] = {}
        for n in self.topological(nodes):
            ps = self.parents.get(n, ())
            top = max((depth.get(p, 0) for p in ps), default=0)
            depth[n] = top + 1 if ps and (n in merges or len(ps) > 1) else top
        return depth

    def stand_ins(self, node: str, known: Callable[[str], T | None],
                  combine: Callable[[str, list[T | None]], T | None]) -> list[T | None]:
        """Per parent of `node`, known(parent); where that is None (a parent not scored on what is compared) what
        combine(parent, its own parents' stand-ins) makes of them, up to ancestors that are known. A parent met again
        on its own line (a cycle) stands as None."""
        memo: dict[str, T | None] = {}

        def line(n: str, seen: frozenset[str]) -> T | None:
            value = known(n)
            if value is not None:
                return value
            if n not in memo:
                memo[n] = combine(n, [None if p in seen else line(p, seen | {n}) for p in self.parents.get(n, ())])
            return memo[n]

        return [line(p, frozenset({node})) for p in self.parents.get(node, ())]

    def roots_of(self, nodes: Iterable[str]) -> dict[str, frozenset[str]]:
        """The parentless ancestors of every model (itself when it has no parents)."""
        roots: dict[str, frozenset[str]] = {}
        distinct: dict[frozenset[str], frozenset[str]] = {}  # equal sets shared (found again by identity)
        for n in self.topological(nodes):
            ps = self.parents.get(n, ())
            found = frozenset().union(*(roots.get(p, frozenset({p})) for p in ps)) if ps else frozenset({n})
            roots[n] = distinct.setdefault(found, found)
        return roots

    def ancestors(self, model_id: str, limit: int | None = None) -> dict[str, int]:
        """Ancestors with their shortest distance (breadth first); at most `limit` of them."""
        dist: dict[str, int] = {}
        queue = deque([(model_id, 0)])
        while queue:
            n, d = queue.popleft()
            for p in self.parents.get(n, ()):
                if p not in dist and p != model_id:
                    if limit is not None and len(dist) >= limit:
                        return dist
                    dist[p] = d + 1
                    queue.append((p, d + 1))
        return dist

    def propagate(self, nodes: Iterable[str], own: dict[str, set]) -> dict[str, frozenset]:
        """Union of `own[x]` over each model and all its ancestors (e.g. the selections it is exposed to)."""
        out: dict[str, frozenset] = {}
        empty: frozenset = frozenset()
        distinct: dict[frozenset, frozenset] = {}  # equal sets shared: a few hundred objects for 10,000 models
        for n in self.topological(nodes):
            acc = set(own.get(n, ()))
            for p in self.parents.get(n, ()):
                acc |= out.get(p, empty)
            if acc:
                found = frozenset(acc)
                out[n] = distinct.setdefault(found, found)
            else:
                out[n] = empty
        return out


def merge_ids(models: pd.DataFrame) -> set[str]:
    """The merges among `models` (frames.models): those with a merge recipe; a fine-tune has none."""
    return set(models.loc[models["method"].notna(), "model_id"].tolist())


def merge_depth(store: Store, model_id: str) -> int:
    """One model's merge depth as the overfitting analysis counts it (Graph.merge_depths: a fine-tune step adds
    nothing), from the store's models and edges."""
    from harness.store import frames

    with store.reading() as con:
        models, edges = frames.models(con), frames.edges(con)
    return Graph.from_edges(edges).merge_depths([model_id], merge_ids(models)).get(model_id, 0)
