"""Bad input through the real entry point (`harness.cli.main`): one line naming the problem and the fix, a non-zero
exit, nothing half written. Found by the CLI audit (branch auditcli)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import test_merge as shared
from tests.factories import run_cli

zoo = shared.zoo


def test_eval_of_models_that_all_fail_exits_non_zero(results, store, tmp_path: Path) -> None:
    # typer (0.29) returns a command's typer.Exit(n) from app(standalone_mode=False) instead of raising it: main()
    # dropped it and exited 0 (`harness eval A B` with every model failing, `harness check` with a failing gate)
    code, out, err = run_cli("eval", str(tmp_path / "nope1"), str(tmp_path / "nope2"), "--suite", "zoo_math")
    assert code == 2, (code, err)
    assert err.count("no model folder") == 2 and "Traceback" not in err


def test_ctrl_c_during_a_merge_exits_130_and_leaves_nothing(zoo, results, tmp_path: Path) -> None:
    # typer turns KeyboardInterrupt into Exit(130), returned (not raised) in non-standalone mode: exit 0, silent
    recipe = shared.write_recipe(tmp_path, "lin", shared.recipes(zoo)["linear"])
    code = ("import os, signal, sys, threading\nfrom harness.cli import main\n"
            "sys.argv = ['harness', 'merge', sys.argv[1]]\n"
            "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""
    merges = results / "merges"
    assert not merges.exists() or not any(merges.iterdir())  # no staging folder, no half-written merge
    again, out, err = run_cli("merge", str(recipe))  # a re-run merges from scratch and records the model
    assert again == 0 and "merged in" in out, err
