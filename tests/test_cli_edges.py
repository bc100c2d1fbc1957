"""The CLI's edges (issue 18, finding 7): bad numbers stop at the flag with exit 2; read commands never create a
store and read one on read-only media; killed merges' staging folders are cleaned without touching a live one;
eval's stderr has no git noise and names merged models; --json stdout is only JSON; --rerun --no-cache counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import test_merge as shared
from tests.factories import run_cli
from tests.test_check import write_tiny_suite

ROOT = Path(__file__).resolve().parent.parent
zoo = shared.zoo


@pytest.fixture()
def suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    return write_tiny_suite(tmp_path / "suites")


@pytest.mark.parametrize("flag", [
    ("--limit", "-1"), ("--limit", "0"), ("--max-length", "-1"),
    ("--batch-size", "0"), ("--batch-size", "-5"), ("--batch-size", "abc"),
])
def test_bad_numbers_stop_at_the_flag(flag, zoo, results, suites) -> None:
    code, out, err = run_cli("eval", str(zoo["m0"]), "--suite", "tiny_mc", "--device", "cpu", *flag)
    assert code == 2, (flag, code, err[-500:])
    assert flag[0] in err and "Traceback" not in err and out == ""
    assert not (results / "harness.duckdb").exists() or not (results / "runs").exists()


def test_port_out_of_range_is_refused(results, store) -> None:
    for cmd in (["dashboard", "--port", "70000"], ["serve", "m", "--port", "0"]):
        code, _, err = run_cli(*cmd)
        assert code == 2 and "--port" in err and "Traceback" not in err, (cmd, err)


@pytest.mark.parametrize("cmd", [["leaderboard"], ["models"], ["lineage", "x"], ["overfit"]])
def test_read_commands_never_create_a_store(cmd, tmp_path: Path) -> None:
    typo = tmp_path / "resluts" / "harness.duckdb"
    code, out, err = run_cli("--db", str(typo), *cmd)
    assert code == 2 and f"no harness store at {typo}" in err, (code, out, err)
    assert not typo.exists() and not typo.parent.exists()


def test_a_store_on_read_only_media_can_be_read(tmp_path: Path, results) -> None:
    from harness.store import Store
    from harness.store.records import RunRecord, Score

    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    store = Store(src / "h.duckdb")
    store.init()
    store.start_run(RunRecord(run_id="r1", model_id="m" * 64, suite="s", backend="hf", harness_version="t"))
    store.finish_run("r1", [Score("s_task", "acc", 0.42, 0.01, 10, 0.4, 0.44),  # a task row and the run's aggregate
                            Score("_aggregate", "acc", 0.42, 0.01, 10, 0.4, 0.44)], [])
    for f in src.glob("h.duckdb.*"):
        f.unlink()  # as copied onto the medium: the store alone
    bound = subprocess.run(["mount", "--bind", str(src), str(ro)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip(f"cannot mount here: {bound.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True, capture_output=True)
        with pytest.raises(OSError):
            (ro / "probe").write_text("x")
        code, out, err = run_cli("--db", str(ro / "h.duckdb"), "leaderboard")
        assert code == 0 and "0.420" in out, err
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_stale_staging_is_cleaned_and_a_live_one_kept(zoo, store, results, tmp_path: Path) -> None:
    from harness.merge import merge_to_folder

    merges = results / "merges"
    dead, live = merges / ".aaaa.tmp-dead0001", merges / ".bbbb.tmp-live0001"
    for d in (dead, live):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x" * 1000)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(120)"), str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        old = time.time() - 3600
        for d in (dead, live):
            os.utime(d, (old, old))
        res = merge_to_folder(shared.write_recipe(tmp_path, "lin", shared.recipes(zoo)["linear"]), store=store)
        assert res.path.is_dir() and not dead.exists()
        assert live.is_dir() and (live / "model.safetensors").is_file()  # a live merge is never touched
    finally:
        holder.kill()
        holder.wait()


def test_eval_output_outside_git_names_counts_and_json(zoo, store, results, suites, tmp_path: Path) -> None:
    """A subprocess in a folder outside any git checkout (git's complaints reach fd 2 there)."""
    from harness.merge import merge_to_folder

    res = merge_to_folder(shared.write_recipe(tmp_path, "named-merge", shared.recipes(zoo)["linear"]), store=store)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    base = [sys.executable, "-m", "harness.cli", "eval", str(res.path), "--suite", "tiny_mc", "--limit", "3",
            "--device", "cpu", "--dtype", "float32"]
    first = subprocess.run(base, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "not a git repository" not in first.stderr, first.stderr
    assert "[1/1] named-merge: tiny_mc" in first.stderr and str(res.path) not in first.stderr.split("->")[0]
    again = subprocess.run([*base, "--rerun", "--no-cache", "--json"], capture_output=True, text=True, env=env,
                           cwd=cwd, timeout=300)
    assert again.returncode == 0, again.stderr
    (row,) = json.loads(again.stdout)  # stdout is the JSON and nothing else: a list, one object per model
    assert row["model"] == str(res.path) and row["status"] == "complete"
    assert row["cached_requests"] == 0 and row["new_requests"] == 12  # 3 documents x 4 choices, recomputed
