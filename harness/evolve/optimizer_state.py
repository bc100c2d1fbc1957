"""The CMA-ES optimizer state as data: JSON numbers and arrays, never a pickle.

A store is a results file that people send each other, so nothing read from it may run code. The state saved
after each generation is `CMA.__getstate__()` (the attributes cmaes itself pickles: numbers, flags and float
arrays, the covariance as its compressed upper triangle) written as JSON. Reading it back starts from a fresh
optimizer built from the config (trusted code) and accepts only the attributes that optimizer has, each with the
same kind and shape; anything else is refused as a damaged store.

    blob = dump(opt)                  # bytes for evolve_runs.optimizer_state
    opt = load(blob, template=new())  # a CMA with the saved state, or HarnessError
"""

from __future__ import annotations

import json
import math
from typing import Any

from harness.errors import HarnessError

FORMAT = "cmaes-state/1"


def _encode(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return {"array": [_float(x) for x in value.astype(float).ravel().tolist()], "shape": list(value.shape)}
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return _float(float(value))
    if value is None:
        return None
    raise TypeError(f"cmaes state holds a {type(value).__name__}, which has no data form here")


def _float(x: float) -> Any:
    return x if math.isfinite(x) else {"float": repr(x)}  # JSON has no inf/nan: spelled out, read back exactly


def dump(opt: Any) -> bytes:
    """The optimizer's state as UTF-8 JSON."""
    state = {name: _encode(value) for name, value in opt.__getstate__().items()}
    return json.dumps({"format": FORMAT, "state": state}, allow_nan=False, sort_keys=True).encode()


def _bad(why: str) -> HarnessError:
    return HarnessError(f"the store's evolve optimizer state is not valid data ({why})",
                        "start the run afresh (change the config's seed) or use a store you trust")


def _decode(name: str, raw: Any, like: Any) -> Any:
    import numpy as np

    if isinstance(like, np.ndarray) or (like is None and isinstance(raw, dict) and "array" in raw):
        if not (isinstance(raw, dict) and set(raw) == {"array", "shape"}):
            raise _bad(f"{name} should be an array")
        values = [_number(name, v) for v in raw["array"]]
        shape = tuple(int(s) for s in raw["shape"])
        if like is not None and shape != like.shape:
            raise _bad(f"{name} has shape {shape}, expected {like.shape}")
        return np.array(values, dtype=float).reshape(shape)
    if raw is None:
        return None
    if isinstance(like, bool | np.bool_):
        if not isinstance(raw, bool):
            raise _bad(f"{name} should be true or false")
        return raw
    if isinstance(like, int | np.integer) and not isinstance(like, bool):
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise _bad(f"{name} should be an integer")
        return raw
    number = _number(name, raw)
    return np.float64(number) if isinstance(like, np.floating) else number


def _number(name: str, raw: Any) -> float:
    if isinstance(raw, dict) and set(raw) == {"float"} and raw["float"] in ("inf", "-inf", "nan"):
        return float(raw["float"])
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    raise _bad(f"{name} should be a number")


def load(blob: bytes, template: Any) -> Any:
    """`template` (a fresh optimizer from the config) with the saved state; HarnessError if `blob` is not that."""
    try:
        doc = json.loads(bytes(blob).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad("not JSON; older stores hold a pickle here, which is never read") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("state"), dict):
        raise _bad(f"not a {FORMAT} document")
    expected = template.__getstate__()
    saved = doc["state"]
    if set(saved) != set(expected):
        raise _bad(f"attributes differ from this cmaes version's: {sorted(set(saved) ^ set(expected))[:4]}")
    template.__setstate__({name: _decode(name, saved[name], expected[name]) for name in expected})
    return template
