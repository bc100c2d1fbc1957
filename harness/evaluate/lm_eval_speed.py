"""Two fixed costs of every lm-eval run that harness pays once instead.

- `lm_eval.utils.apply_template` compiles its Jinja template on every call: 1,400 compiles (about 1 s here) for
  200 multiple-choice documents, the same few templates each time. harness compiles each distinct template once
  per process.
- `simple_evaluate` records the environment through `torch.utils.collect_env`, which runs `pip list` and other
  subprocesses (0.7-0.9 s here) on every run. harness computes that text once per environment (the interpreter and
  the distributions installed in its site-packages folders) and remembers it under results/cache/.

A third is about noise, not time: lm-eval asks `git describe` for the working folder's commit and lets git print
`fatal: not a git repository` on every run outside a checkout. harness asks the same question with git's stderr
captured (`_quiet_git_hash`), so the recorded value is unchanged.

All are installed only while harness's own `simple_evaluate` call runs (`faster_lm_eval()`), and restored after:
the results are the same, byte for byte, as without them.
"""

from __future__ import annotations

import functools
import os
import site
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.hashing import hash_json


@functools.lru_cache(maxsize=512)
def _compiled(template: str) -> Any:
    from lm_eval.utils import env

    return env.from_string(template)


def _apply_template(template: str, doc: dict) -> str:
    return _compiled(template).render(**doc)


def _environment_key() -> str:
    """The interpreter and the installed distributions (names and versions, from the *.dist-info folders)."""
    folders = [Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]
    installed = sorted(e.name for p in folders for e in os.scandir(p) if e.name.endswith((".dist-info", ".egg-info")))
    return hash_json(["env_info", sys.executable, [str(p) for p in folders], installed])


@functools.lru_cache(maxsize=1)
def _pretty_env_info(real: Any) -> str:
    from harness.identity import memo

    key = _environment_key()
    known = memo("env_info").get(key)
    if known is None:
        known = real()
        memo("env_info", key, known)
    return known


def _quiet_git_hash() -> Any:
    """lm-eval's `get_git_commit_hash`, with git's complaints captured instead of printed."""
    import subprocess

    from lm_eval.loggers.utils import get_commit_from_path

    try:
        out = subprocess.run(["git", "describe", "--always"], capture_output=True, check=True)  # noqa: S607
        return out.stdout.strip().decode()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return get_commit_from_path(os.getcwd())


@contextmanager
def faster_lm_eval() -> Iterator[None]:
    """Compile each lm-eval template once and reuse the environment description, for the length of the block."""
    import lm_eval.evaluator
    import lm_eval.utils
    import torch.utils.collect_env as collect_env

    real_apply, real_env = lm_eval.utils.apply_template, collect_env.get_pretty_env_info
    real_git = lm_eval.evaluator.get_git_commit_hash
    lm_eval.utils.apply_template = _apply_template
    collect_env.get_pretty_env_info = functools.partial(_pretty_env_info, real_env)
    lm_eval.evaluator.get_git_commit_hash = _quiet_git_hash
    try:
        yield
    finally:
        lm_eval.utils.apply_template = real_apply
        collect_env.get_pretty_env_info = real_env
        lm_eval.evaluator.get_git_commit_hash = real_git
