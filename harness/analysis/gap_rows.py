"""The twin-gap rows of a Data as columns with an index: (model_id, suite, twin kind) -> row number.

    rows = gap_rows(data)            # built once per Data (kept on data.rows_cache)
    i = rows.index[(mid, suite, kind)]
    rows.col["gap"][i]               # Python values, as the frame's .tolist() gives them
    rows[(mid, suite, kind)]         # one row as a dict (made on demand: for the few rows a flag explains)

At 10,000 models a store has ~30,000 gap rows: the analysis reads them by column and by key, and a dict per row
(30,000 of them, each rebuilt by every reader) cost more than the reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from harness.analysis.evidence import Data

Key = tuple[str, str, str]


class GapRows(Mapping[Key, dict]):
    """A read-only mapping key -> row dict over columns; `index`, `col` and `array` for column-wise readers."""

    def __init__(self, cols: dict[str, list]) -> None:
        keys = list(zip(cols["model_id"], cols["suite"], cols["kind"], strict=True))
        index: dict[Key, int] = {k: i for i, k in enumerate(keys)}
        if len(index) != len(keys):  # a key twice: its last row, in the place of its first (as a dict would)
            keep = list(index.values())
            cols = {c: [v[i] for i in keep] for c, v in cols.items()}
            keys, index = list(index), {k: i for i, k in enumerate(index)}
        self.col, self.keys_, self.index = cols, keys, index
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str) -> np.ndarray:
        """A float column as a numpy array (made once)."""
        import numpy as np

        if name not in self._arrays:
            self._arrays[name] = np.array(self.col[name], dtype=float)
        return self._arrays[name]

    def row(self, i: int) -> dict[str, Any]:
        return {c: v[i] for c, v in self.col.items()}

    def __getitem__(self, key: Key) -> dict[str, Any]:
        return self.row(self.index[key])

    def __contains__(self, key: object) -> bool:
        return key in self.index

    def __iter__(self) -> Iterator[Key]:
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)


def gap_rows(data: Data) -> GapRows:
    """The gap rows of `data`, built once per Data."""
    if data.rows_cache is None:
        g = data.gaps
        data.rows_cache = GapRows({c: g[c].tolist() for c in g.columns})
    return data.rows_cache
