"""Task YAMLs read without lm-eval: their `include:` chains merged as lm-eval merges them, the files that define a
task (for the run id's definition hash) and the installed lm-eval's task a `lm_eval:` include names.

`!function x.y` is kept as the string 'x.y' (enough to index tasks and data files): reading a task YAML imports
nothing. harness.suites indexes a suite's tasks with `read_yaml` and hashes them with `definition_files`; only
`Suite.task_configs` hands them to lm-eval's own loader.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError

UPSTREAM = "lm_eval:"  # `include: lm_eval:tasks/gsm8k/gsm8k-cot.yaml` = that file of the installed lm-eval


class _TaskYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that keeps `!function x.y` as the string 'x.y' (enough to index tasks and data files)."""


_TaskYamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def read_yaml(path: Path) -> dict[str, Any]:
    """A task YAML with its `include:` chain merged the way lm-eval merges it (local keys win). Read-only."""
    path = path.resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        raise HarnessError(f"{path}: task YAML not found", "fix the include: or restore the file") from None
    return _read_yaml_cached(path, mtime, frozenset())


def definition_files(path: Path, seen: frozenset[Path] = frozenset()) -> list[Path]:
    """A task YAML, the Python modules beside it (its `!function`s) and, recursively, the files it includes."""
    path = path.resolve()
    if path in seen:
        raise HarnessError(f"{path}: include cycle", "remove the circular include:")
    files = [path, *_modules_beside(path.parent, path.parent.stat().st_mtime_ns)]
    for inc in _includes(_raw_yaml(path, path.stat().st_mtime_ns), path):
        files += definition_files(inc, seen | {path})
    return files


def _includes(cfg: dict[str, Any], path: Path) -> list[Path]:
    """The files a task YAML (`cfg`, read from `path`, resolved) includes, in order, as lm-eval's loader finds them:
    `include: lm_eval:...`, that file of the installed lm-eval; else each name relative to the including file's
    folder. The one include rule of the config reader (read_yaml) and the run id's hash (definition_files)."""
    upstream = upstream_include(cfg, path)
    if upstream is not None:
        return [upstream]
    includes = cfg.get("include")
    found = []
    for inc in [] if includes is None else includes if isinstance(includes, list) else [includes]:
        inc_path = (path.parent / inc).resolve()
        if not inc_path.is_file():
            raise HarnessError(f"{path}: include {inc!r} not found", "fix the include: or restore the file")
        found.append(inc_path)
    return found


@functools.lru_cache(maxsize=1024)
def _modules_beside(folder: Path, _mtime_ns: int) -> tuple[Path, ...]:
    """The Python modules of a folder (where a task YAML's `!function`s live), listed once per version of it."""
    return tuple(sorted(folder.glob("*.py")))


@functools.lru_cache(maxsize=4096)
def _raw_yaml(path: Path, _mtime_ns: int) -> dict[str, Any]:
    """A task YAML as written (its `include:` not followed), parsed once per version of the file."""
    local = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)  # noqa: S506 (safe subclass)
    if not isinstance(local, dict):  # the suite's load read every chain: only a file changed since gets here
        raise HarnessError(f"{path}: a task YAML must be a mapping", "fix the file")
    return local


@functools.lru_cache(maxsize=1)
def lm_eval_tasks_dir() -> Path:
    """The installed lm-eval's tasks folder, found without importing lm-eval."""
    import importlib.util

    spec = importlib.util.find_spec("lm_eval")
    if spec is None or spec.origin is None:
        raise HarnessError("lm-eval is not installed", "pip install 'lm-eval==0.4.13'", exit_code=3)
    return Path(spec.origin).parent / "tasks"


def upstream_include(cfg: dict[str, Any], path: Path) -> Path | None:
    """The installed lm-eval task YAML a task YAML includes with `lm_eval:...`; a one-line error naming the task
    and lm-eval's version when this lm-eval no longer ships it (a renamed or moved upstream task)."""
    inc = cfg.get("include")
    if not isinstance(inc, str) or not inc.startswith(UPSTREAM):
        return None
    rel = inc.removeprefix(UPSTREAM)
    target = lm_eval_tasks_dir().parent / rel
    if not target.is_file():
        from importlib.metadata import version

        raise HarnessError(
            f"{path}: task {cfg.get('task')!r} includes {rel}, which lm-eval {version('lm_eval')} does not ship",
            "install the lm-eval version the suite was written for (see its README) or update the suite's include:")
    return target


@functools.lru_cache(maxsize=4096)
def _read_yaml_cached(path: Path, mtime: int, _seen: frozenset[Path]) -> dict[str, Any]:
    if path in _seen:
        raise HarnessError(f"{path}: include cycle", "remove the circular include:")
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_TaskYamlLoader)  # noqa: S506 (safe subclass)
    except (yaml.YAMLError, OSError) as e:
        raise HarnessError(f"{path}: cannot read task YAML ({type(e).__name__})", "fix the file") from None
    if not isinstance(cfg, dict):
        raise HarnessError(f"{path}: a task YAML must be a mapping", "fix the file")
    merged: dict[str, Any] = {}
    for inc_path in _includes(cfg, path):
        inc_cfg = dict(_read_yaml_cached(inc_path, inc_path.stat().st_mtime_ns, _seen | {path}))
        inc_cfg.pop("task_list", None)
        merged.update(inc_cfg)
    merged.update({k: v for k, v in cfg.items() if k != "include"})
    return merged
