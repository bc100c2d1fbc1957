"""The data files of a suite's task YAMLs: their names (`dataset_kwargs.data_files`), made absolute, and the ones
the user supplies (suite.yaml `user_data`, docs/suites.md "User-supplied data").

A user-supplied file is one the suite may not ship (GSM8K's train split, the few-shot pool of the Open LLM
Leaderboard v1 setting): it is read from the suite folder when the user put it there, else from the path in the
environment variable its `user_data` entry names; when neither exists, a split whose tasks read it fails with one
line naming the file and where to get it. The other splits never look at it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.suite_schema import UserDataSpec


def data_file_names(cfg: dict[str, Any], yaml_path: Path) -> list[str]:
    """The data file names of a task config as written (relative to the suite folder)."""
    kwargs = cfg.get("dataset_kwargs") or {}
    files = kwargs.get("data_files") if isinstance(kwargs, dict) else None
    if files is None:
        return []
    values = list(files.values()) if isinstance(files, dict) else [files]
    out: list[str] = []
    for v in values:
        for f in v if isinstance(v, list) else [v]:
            if not isinstance(f, str):
                raise HarnessError(f"{yaml_path}: dataset_kwargs.data_files must hold paths", "use strings")
            out.append(f)
    return out


def user_file(suite: str, folder: Path, name: str, spec: UserDataSpec) -> Path:
    """Where a user-supplied file is: in the suite folder, else at $<spec.env>; a one-line error otherwise."""
    here = folder / name
    if here.is_file():
        return here.resolve()
    there = os.environ.get(spec.env, "")
    if there and Path(there).expanduser().is_file():
        return Path(there).expanduser().resolve()
    unset = f"${spec.env} is unset" if not there else f"${spec.env}={there} is not a file"
    raise HarnessError(
        f"suite {suite!r} needs {spec.what}, which it does not ship: {here} is missing and {unset}",
        f"get {spec.get} and put it at {here}, or set {spec.env} to its path")


def absolute_data_files(cfg: dict[str, Any], folder: Path, yaml_path: Path, suite: str,
                        user_data: Mapping[str, UserDataSpec]) -> dict[str, Any]:
    """The config with every data file absolute (relative to the suite folder; user-supplied ones resolved)."""
    kwargs = cfg.get("dataset_kwargs")
    if not isinstance(kwargs, dict) or kwargs.get("data_files") is None:
        return cfg
    files = kwargs["data_files"]

    def absolute(v: Any) -> Any:
        if isinstance(v, list):
            return [absolute(x) for x in v]
        if v in user_data:
            return str(user_file(suite, folder, v, user_data[v]))
        p = folder / v
        if not p.is_file():
            raise HarnessError(f"{yaml_path}: data file {p} is missing", "restore it or fix data_files")
        return str(p.resolve())

    new_files = {k: absolute(v) for k, v in files.items()} if isinstance(files, dict) else absolute(files)
    return {**cfg, "dataset_kwargs": {**kwargs, "data_files": new_files}}
