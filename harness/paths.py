"""Where harness reads and writes by default. Every default can be overridden by a flag or an env variable.

Output goes to the working directory (./results), or to $HARNESS_HOME, never into the installed package.
The shipped suites/ and dashboard/ are found beside harness/ in a checkout, or inside the package
(harness/_suites, harness/_dashboard) when harness was installed from a wheel (see setup.py).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DB = "HARNESS_DB"
ENV_HOME = "HARNESS_HOME"
ENV_RESULTS = "HARNESS_RESULTS"
ENV_CACHE = "HARNESS_CACHE"
ENV_SUITES = "HARNESS_SUITES"

_PACKAGE = Path(__file__).resolve().parent


def shipped(name: str) -> Path:
    """suites or dashboard: inside the installed package if the wheel put it there, else beside harness/."""
    inside = _PACKAGE / f"_{name}"
    return inside if inside.is_dir() else _PACKAGE.parent / name


def results_dir() -> Path:
    """$HARNESS_RESULTS, else $HARNESS_HOME, else ./results in the working directory."""
    env = os.environ.get(ENV_RESULTS) or os.environ.get(ENV_HOME)
    return Path(env) if env else Path.cwd() / "results"


def default_db_path() -> Path:
    env = os.environ.get(ENV_DB)
    return Path(env) if env else results_dir() / "harness.duckdb"


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE, results_dir() / "cache"))


def suites_dir() -> Path:
    return shipped("suites")


def dashboard_dir() -> Path:
    return shipped("dashboard")


def suite_roots() -> list[Path]:
    """The shipped suites folder, then any folders of the user's own suites in $HARNESS_SUITES (os.pathsep)."""
    extra = [Path(p) for p in os.environ.get(ENV_SUITES, "").split(os.pathsep) if p]
    return [suites_dir(), *extra]


def zoo_dir() -> Path:
    return results_dir() / "zoo"
