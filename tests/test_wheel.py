"""harness as an installed package: the wheel built from this checkout, installed into a fresh venv outside it,
evaluates a zoo model and serves the dashboard from a folder of the user's own, writing nothing into the package.

The venv is created without --system-site-packages and gets only the wheel (pip install --no-deps); the
dependencies (torch, lm-eval, streamlit ...: gigabytes) come from this interpreter's site-packages through one
.pth line appended after the venv's own, so `import harness` finds the wheel, never this checkout (the editable
install's finder is a .pth that such a path line does not run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.test_dashboard_e2e import free_port, wait_http

ROOT = Path(__file__).resolve().parent.parent


def sh(*cmd: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_wheel_installs_evaluates_and_serves(tmp_path: Path, zoo_family: Path) -> None:
    wheels, venv, work = tmp_path / "wheels", tmp_path / "venv", tmp_path / "project"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_") and k != "PYTHONPATH"}
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, ROOT, cwd=tmp_path,
       env=env)
    (wheel,) = wheels.glob("harness-*.whl")
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    py = venv / "bin" / "python"
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path,
                   env=env).strip())
    sh(sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", wheel, cwd=tmp_path, env=env)
    assert (site / "harness" / "__init__.py").is_file()
    (site / "zz_harness_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    harness = venv / "bin" / "harness"
    where = sh(py, "-c", "import harness, harness.paths as p; print(harness.__file__); print(p.suites_dir())",
               cwd=work, env=env).split()
    assert where[0].startswith(str(site)) and where[1] == str(site / "harness" / "_suites")
    assert sh(harness, "suites", "path", cwd=work, env=env).strip() == where[1]
    assert "mmlu" in sh(harness, "suites", "list", cwd=work, env=env).split()

    out = sh(harness, "eval", zoo_family / "zoo-math", "--suite", "zoo_math", "--limit", "4", "--json",
             cwd=work, env=env)
    scores = json.loads(out)
    assert scores[0]["suite"] == "zoo_math" and scores[0]["scores"]
    assert (work / "results" / "harness.duckdb").is_file()
    assert not [p for p in (site / "harness").rglob("*") if p.suffix in (".duckdb", ".jsonl") and "_suites" not in
                p.parts], "the installed package was written into"

    port = free_port()
    server = subprocess.Popen([str(harness), "dashboard", "--port", str(port)], cwd=work, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", server)
    finally:
        server.terminate()
        server.wait(timeout=30)
    page = sh(py, "-c", (
        "from streamlit.testing.v1 import AppTest; import harness.paths as p; "
        "at = AppTest.from_file(str(p.dashboard_dir() / 'app.py'), default_timeout=120).run(); "
        "assert not at.exception, at.exception; print(p.dashboard_dir()); "
        "print(' '.join(str(d.value.to_json()) for d in at.dataframe))"),
        cwd=work, env={**env, "HARNESS_DB": str(work / "results" / "harness.duckdb")})
    assert page.splitlines()[0] == str(site / "harness" / "_dashboard")
    assert "zoo-math" in page
