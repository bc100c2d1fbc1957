"""Ctrl-C during `harness merge`, through the real entry point in a subprocess: exit 130, "interrupted", nothing
half written, wherever the SIGINT lands (harness/cli/interrupts.py), in the answers index's path too.

The SIGINT is sent from an audit hook at a known phase of the merge, not after a delay: a timer of 0.5 s landed
in the imports on a loaded machine and after the merge on an idle one. Where it lands decides who sees it:
`raised`, our code (as a Ctrl-C in plain Python code); `finalizer`, a `__del__` running then, where Python prints
and drops the KeyboardInterrupt (seen for real: a regex pattern collected while transformers imported torch; the
merge ran on, exit 0, "merged in 12.1s"); `converted`, a library that makes its own error of it (duckdb's "Query
interrupted"); `dropped`, a library that catches and ignores it (`except BaseException: pass`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests import test_merge as shared

zoo = shared.zoo

SCRIPT = """
import signal, sys
recipe, event, match, how = sys.argv[1:5]
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores SIGINT)

class Finalizer:
    def __del__(self):
        signal.raise_signal(signal.SIGINT)

def ctrl_c(how):
    if how == "raised":
        signal.raise_signal(signal.SIGINT)
    elif how == "finalizer":
        Finalizer()  # dropped at once: its __del__ runs the handler
    elif how in ("converted", "dropped"):
        try:
            signal.raise_signal(signal.SIGINT)
        except BaseException as exc:
            if how == "converted":
                raise RuntimeError("Query interrupted") from exc

fired = []
def hook(ev, args):
    if not fired and ev == event and args and match in str(args[0]):
        fired.append(ev)
        ctrl_c(how)

sys.addaudithook(hook)
sys.argv = ["harness", "merge", recipe]
from harness.cli import main
main()
"""

# (audit event, in its first argument, what the merge has done by then)
PHASES = {
    "starting": ("import", "mergekit.merge", "its staging folder made, no tensor merged"),
    "weights written": ("os.rename", "model-1.safetensors", "the weights in the staging folder"),
    "last file": ("open", "harness_merge.json", "every file but its record written"),
    "answering": ("open", "merge_answers.json", "a complete merge's answer being read from the answers index"),
    "handing over": ("import", "harness.cli.commands", "no answer in the index: the full command line loading"),
}


def merge_with_ctrl_c(recipe: Path, results: Path, phase: str, how: str) -> subprocess.CompletedProcess:
    event, match, _ = PHASES[phase]
    env = {**os.environ, "HARNESS_RESULTS": str(results), "HARNESS_DB": str(results / "harness.duckdb")}
    return subprocess.run([sys.executable, "-c", SCRIPT, str(recipe), event, match, how], capture_output=True,
                          text=True, timeout=300, env=env)


def merge_rows(results: Path) -> int:
    import duckdb

    with duckdb.connect(str(results / "harness.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM models WHERE kind = 'merge'").fetchone()[0]


def tensors(folder: Path) -> dict:
    from safetensors.numpy import load_file

    out: dict = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def test_ctrl_c_during_a_merge_exits_130_and_leaves_nothing(zoo, tmp_path: Path) -> None:
    # before: `finalizer` exit 0 with the merge recorded, "Exception ignored ... KeyboardInterrupt" on stderr;
    # `converted` exit 2, "error: mergekit failed: Query interrupted: fix the recipe or its models"
    recipe = shared.write_recipe(tmp_path, "ties", shared.recipes(zoo)["ties"])
    for phase, how in (("starting", "raised"), ("weights written", "raised"), ("last file", "raised"),
                       ("starting", "finalizer"), ("weights written", "finalizer"), ("last file", "finalizer"),
                       ("weights written", "converted")):
        results = tmp_path / f"{phase}-{how}".replace(" ", "-")
        proc = merge_with_ctrl_c(recipe, results, phase, how)
        seen = (phase, how, proc.returncode, proc.stdout, proc.stderr[-2000:])
        assert proc.returncode == 130 and proc.stderr.strip().splitlines()[-1:] == ["interrupted"], seen
        assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr and proc.stdout == "", seen
        merges = results / "merges"
        assert not merges.exists() or not any(merges.iterdir()), seen  # no staging folder, no merge
        assert merge_rows(results) == 0, seen
        print(f"Ctrl-C {how} when {phase} ({PHASES[phase][2]}): exit 130, merges/ empty, 0 merge rows")


def test_a_ctrl_c_a_library_drops_exits_130_and_keeps_the_whole_merge(zoo, tmp_path: Path) -> None:
    # nothing can raise a Ctrl-C a library caught and dropped: the merge runs to its end; before: exit 0, silent
    recipe = shared.write_recipe(tmp_path, "ties", shared.recipes(zoo)["ties"])
    proc = merge_with_ctrl_c(recipe, tmp_path / "dropped", "weights written", "dropped")
    assert proc.returncode == 130, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "interrupted" in proc.stderr and "complete and kept" in proc.stderr and "Traceback" not in proc.stderr
    assert "merged in" in proc.stdout and merge_rows(tmp_path / "dropped") == 1
    clean = merge_with_ctrl_c(recipe, tmp_path / "clean", "last file", "none")  # the hook fires, does nothing
    assert clean.returncode == 0 and merge_rows(tmp_path / "clean") == 1, clean.stderr[-2000:]
    (kept,), (made,) = ((tmp_path / r / "merges").iterdir() for r in ("dropped", "clean"))
    assert kept.name == made.name
    a, b = tensors(kept), tensors(made)
    assert a.keys() == b.keys() and len(a) > 0
    assert all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)
    print(f"dropped Ctrl-C: exit 130, merge {kept.name[:12]} kept, {len(a)} tensors byte-identical to a clean merge")


def test_a_ctrl_c_a_finalizer_swallowed_is_raised_at_the_next_call() -> None:
    import signal

    from harness.cli.interrupts import noting_interrupts

    class Finalizer:
        def __del__(self) -> None:
            signal.raise_signal(signal.SIGINT)

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # a background test run ignores SIGINT
    hook, ran = sys.unraisablehook, []
    try:
        try:
            with noting_interrupts() as seen:
                Finalizer()  # Python drops what its __del__ raises (before: the next line ran, nothing raised)
                ran.append("after the finalizer")
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the Ctrl-C was swallowed")
        assert ran == [] and seen == [signal.SIGINT]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and sys.unraisablehook is hook
        assert sys.getprofile() is None
    finally:
        signal.signal(signal.SIGINT, before)


def test_ctrl_c_while_the_answers_index_answers_exits_130_and_changes_nothing(zoo, tmp_path: Path) -> None:
    # before: the answers index (harness/cli/answers.py) ran before any handler: `raised` and `finalizer` printed
    # Python's KeyboardInterrupt traceback; `converted` fell through to the store, which answered, exit 0
    recipe = shared.write_recipe(tmp_path, "ties", shared.recipes(zoo)["ties"])
    results = tmp_path / "results"
    made = merge_with_ctrl_c(recipe, results, "last file", "none")  # the hook fires, does nothing
    assert made.returncode == 0 and "merged in" in made.stdout, made.stderr[-2000:]
    index = results / "cache" / "merge_answers.json"
    remembered = index.read_bytes()
    answered = merge_with_ctrl_c(recipe, results, "answering", "none")
    assert answered.returncode == 0 and " cached: " in answered.stdout and index.read_bytes() == remembered
    for phase, how in (("answering", "raised"), ("answering", "finalizer"), ("answering", "converted"),
                       ("handing over", "raised"), ("handing over", "finalizer")):
        if phase == "handing over":
            index.unlink(missing_ok=True)  # no answer: the full command line takes over
        proc = merge_with_ctrl_c(recipe, results, phase, how)
        seen = (phase, how, proc.returncode, proc.stdout, proc.stderr[-2000:])
        assert proc.returncode == 130 and proc.stderr.strip().splitlines() == ["interrupted"], seen
        assert proc.stdout == "", seen
        assert merge_rows(results) == 1 and len(list((results / "merges").iterdir())) == 1, seen
        assert (index.read_bytes() == remembered) if phase == "answering" else not index.exists(), seen
        print(f"Ctrl-C {how} when {phase} ({PHASES[phase][2]}): exit 130, one line, store and index unchanged")


def test_a_ctrl_c_dropped_while_the_answers_index_answers_exits_130_after_the_answer(zoo, tmp_path: Path) -> None:
    # as the full command line ends a command that ran to its end past a Ctrl-C a library dropped; before: exit 0
    recipe = shared.write_recipe(tmp_path, "ties", shared.recipes(zoo)["ties"])
    results = tmp_path / "results"
    assert merge_with_ctrl_c(recipe, results, "last file", "none").returncode == 0
    answered = merge_with_ctrl_c(recipe, results, "answering", "none").stdout
    proc = merge_with_ctrl_c(recipe, results, "answering", "dropped")
    assert proc.returncode == 130 and proc.stdout == answered and " cached: " in answered, proc.stderr[-2000:]
    assert "interrupted" in proc.stderr and "complete and kept" in proc.stderr and "Traceback" not in proc.stderr
