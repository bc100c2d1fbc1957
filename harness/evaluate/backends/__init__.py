"""The backend registry: one module per backend, named here as a lazy "module" string.

Each backend module exposes `BACKEND: Backend` (see base.py). Nothing heavy is imported until `get_backend`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harness.errors import HarnessError, did_you_mean

if TYPE_CHECKING:
    from harness.evaluate.backends.base import Backend

BACKENDS: dict[str, str] = {
    "hf": "harness.evaluate.backends.hf",
    "vllm": "harness.evaluate.backends.vllm",
    "openai": "harness.evaluate.backends.openai",
    "ensemble": "harness.evaluate.backends.ensemble",
}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise HarnessError(
            f"unknown backend {name!r}{did_you_mean(name, list(BACKENDS))}", f"use one of {', '.join(BACKENDS)}"
        )
    return importlib.import_module(BACKENDS[name]).BACKEND
