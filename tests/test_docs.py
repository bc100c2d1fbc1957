"""The docs keep up with the code: every CLI command and every suite is documented."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import typer

from harness.cli import app

REPO = Path(__file__).resolve().parent.parent


def _docs_text() -> str:
    parts = [(REPO / "README.md").read_text()]
    parts += [p.read_text() for p in sorted((REPO / "docs").glob("*.md"))]
    return "\n".join(parts)


def _command_paths(cmd: object, prefix: str) -> list[str]:
    if getattr(cmd, "commands", None):
        out = []
        for name, sub in cmd.commands.items():
            out += _command_paths(sub, f"{prefix} {name}")
        return out
    return [prefix]


def test_every_cli_command_is_documented() -> None:
    docs = _docs_text()
    commands = _command_paths(typer.main.get_command(app), "harness")
    assert len(commands) >= 3
    missing = [c for c in commands if c not in docs]
    assert not missing, f"commands missing from README.md/docs: {missing}"


def test_every_suite_is_documented() -> None:
    docs = _docs_text()
    names = [p.parent.name for p in (REPO / "suites").rglob("suite.yaml")]
    missing = [n for n in names if f"`{n}`" not in docs]
    assert not missing, f"suites missing from README.md/docs: {missing}"


def test_help_is_fast_and_light() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import harness.cli; "
        "heavy = [m for m in ('torch', 'vllm', 'transformers', 'lm_eval', 'mergekit') if m in sys.modules]; "
        "print(heavy, time.perf_counter() - t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    heavy, seconds = out.stdout.rsplit(" ", 1)
    assert heavy == "[]", f"importing the CLI imported {heavy}"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli.__main__", "--help"], capture_output=True, check=True, cwd=REPO)
    assert time.perf_counter() - start < 3.0  # generous for a loaded 2-core CI machine; typically ~0.2 s
