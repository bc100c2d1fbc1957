"""Two fixed costs of every lm-eval run that harness pays once instead.

- `lm_eval.utils.apply_template` compiles its Jinja template on every call: 1,400 compiles (about 1 s here) for
  200 multiple-choice documents, the same few templates each time. harness compiles each distinct template once
  per process.
- `simple_evaluate` records the environment through `torch.utils.collect_env`, which runs `pip list` and other
  subprocesses (0.7-0.9 s here) on every run. harness computes that text once per environment (the interpreter and
  the distributions installed in its site-packages folders) and remembers it under results/cache/.
- It also imports torch (to seed it, to describe it) and transformers (for its version string) on every run: 5 CPU
  s here, for a run answered wholly from the request cache that needs neither. harness seeds torch right before a
  model is built and reads transformers' version from its metadata.

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


def _real_pretty_env_info() -> str:
    from torch.utils.collect_env import get_pretty_env_info

    return get_pretty_env_info()


def _add_env_info(real: Any, storage: dict[str, Any]) -> None:
    """lm-eval's `add_env_info` with the same values, without importing torch or transformers for them: the
    environment text comes from the memo (torch only on a miss), transformers' version from its metadata."""
    import importlib.util

    import lm_eval.utils

    flags = lm_eval.utils.is_torch_available, lm_eval.utils.is_transformers_available
    lm_eval.utils.is_torch_available = lm_eval.utils.is_transformers_available = lambda: False
    try:
        real(storage)
    finally:
        lm_eval.utils.is_torch_available, lm_eval.utils.is_transformers_available = flags
    if importlib.util.find_spec("torch") is not None:
        try:
            storage["pretty_env_info"] = _pretty_env_info(_real_pretty_env_info)
        except Exception as err:  # noqa: BLE001 - as lm-eval records it
            storage["pretty_env_info"] = str(err)
    if importlib.util.find_spec("transformers") is not None:
        from harness.evaluate.backends.base import package_version

        storage["transformers_version"] = package_version("transformers")


def _set_torch_seed(seed: int) -> None:
    """lm-eval seeds torch at the start of a run; harness seeds it again right before a model is built (runner),
    so a run answered wholly from the cache never imports torch. Nothing between the two draws from torch."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


@contextmanager
def faster_lm_eval() -> Iterator[None]:
    """Compile each lm-eval template once, reuse the environment description and import torch and transformers
    only when a model runs, for the length of the block."""
    import lm_eval.evaluator
    import lm_eval.utils

    real_apply, real_env = lm_eval.utils.apply_template, lm_eval.evaluator.add_env_info
    real_git, real_seed = lm_eval.evaluator.get_git_commit_hash, lm_eval.evaluator.set_torch_seed
    lm_eval.utils.apply_template = _apply_template
    lm_eval.evaluator.add_env_info = functools.partial(_add_env_info, real_env)
    lm_eval.evaluator.get_git_commit_hash = _quiet_git_hash
    lm_eval.evaluator.set_torch_seed = _set_torch_seed
    try:
        yield
    finally:
        lm_eval.utils.apply_template = real_apply
        lm_eval.evaluator.add_env_info = real_env
        lm_eval.evaluator.get_git_commit_hash = real_git
        lm_eval.evaluator.set_torch_seed = real_seed
