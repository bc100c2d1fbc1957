"""harness's version has one home, harness/__init__.py: pyproject.toml reads it (setuptools' dynamic `attr:`), so
a bump there is the version of the wheel and of `harness --version` alike. Before, pyproject.toml wrote 0.1.0 again
beside it, and a bump of one left the other behind."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INIT = (ROOT / "harness" / "__init__.py").read_text()


def built_version(tmp: Path, init: str) -> str:
    """The Version setuptools' build backend writes into the wheel's METADATA for this checkout's pyproject.toml
    and setup.py with harness/__init__.py reading `init` (the shipped data folders left empty)."""
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, tmp / name)
    for folder in ("harness", "suites", "dashboard", "meta"):
        (tmp / folder).mkdir()
    (tmp / "harness" / "__init__.py").write_text(init)
    code = "import sys; from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel('meta'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    meta = (tmp / "meta" / done.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    (version,) = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Version: ")]
    return version


def test_the_package_version_is_harness_version(tmp_path: Path) -> None:
    import harness

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" in project.get("dynamic", []) and "version" not in project, project.get("version")
    assert built_version(tmp_path, INIT) == harness.__version__


def test_a_bump_in_harness_init_is_the_package_version(tmp_path: Path) -> None:
    """A checkout whose harness/__init__.py says 9.9.9 builds harness 9.9.9."""
    assert INIT.count('__version__ = "') == 1
    head, _, rest = INIT.partition('__version__ = "')
    assert built_version(tmp_path, head + '__version__ = "9.9.9' + rest[rest.index('"'):]) == "9.9.9"
