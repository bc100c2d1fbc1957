"""Where harness reads and writes by default. Every default can be overridden by a flag or an env variable."""

from __future__ import annotations

import os
from pathlib import Path

ENV_DB = "HARNESS_DB"
ENV_RESULTS = "HARNESS_RESULTS"
ENV_CACHE = "HARNESS_CACHE"
ENV_SUITES = "HARNESS_SUITES"


def repo_root() -> Path:
    """The checkout this package lives in (suites/ and dashboard/ sit beside harness/)."""
    return Path(__file__).resolve().parent.parent


def results_dir() -> Path:
    return Path(os.environ.get(ENV_RESULTS, repo_root() / "results"))


def default_db_path() -> Path:
    env = os.environ.get(ENV_DB)
    return Path(env) if env else results_dir() / "harness.duckdb"


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE, results_dir() / "cache"))


def suites_dir() -> Path:
    return repo_root() / "suites"


def suite_roots() -> list[Path]:
    """The shipped suites folder, then any folders of the user's own suites in $HARNESS_SUITES (os.pathsep)."""
    extra = [Path(p) for p in os.environ.get(ENV_SUITES, "").split(os.pathsep) if p]
    return [suites_dir(), *extra]


def zoo_dir() -> Path:
    return results_dir() / "zoo"
