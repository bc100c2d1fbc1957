"""Evolutionary model merging: CMA-ES over merge parameters, each candidate merged in memory, swapped into one live
engine, scored by lm-eval on a search split, recorded with its lineage; the best one checked on a held-out split.

The whole job (search, then the best candidate materialised and evaluated) is a workflow:

    from harness.workflows.evolve import run_evolve
    result = run_evolve("examples/evolve_zoo.yaml")

Importing this package imports neither torch, cmaes, vllm, lm_eval nor mergekit (see docs/evolve.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.evolve.config import EvolveConfig, load_config
    from harness.evolve.loop import EvolveResult, GenerationReport

__all__ = ["EvolveConfig", "EvolveResult", "GenerationReport", "load_config"]


def __getattr__(name: str) -> Any:
    if name in ("EvolveConfig", "load_config"):
        from harness.evolve import config

        return getattr(config, name)
    if name in ("EvolveResult", "GenerationReport"):
        from harness.evolve import loop

        return getattr(loop, name)
    raise AttributeError(name)
