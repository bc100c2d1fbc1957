"""harness eval refuses what would give a silent wrong result or run code (issue 18): non-finite weights,
log-likelihoods and scores; pickle checkpoints without --allow-pickle. Tiny real models, real lm-eval."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.runner import EvalOptions, evaluate_model
from tests.test_eval_support import make_suite

OPTS = EvalOptions(backend_options=BackendOptions(device="cpu", dtype="float32", batch_size=8))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.factories import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture()
def suite(tmp_path: Path):
    return make_suite(tmp_path / "suite", n=10)


def edited_copy(model: Path, dest: Path, edit) -> Path:
    """A copy of `model` whose safetensors went through `edit(state_dict)`."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(model, dest)
    sd = load_file(str(dest / "model.safetensors"))
    edit(sd)
    save_file(sd, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def test_nan_weights_fail_naming_the_model_and_tensor(results: Path, store, model: Path, suite, tmp_path) -> None:
    def poison(sd) -> None:
        sd["model.layers.1.mlp.down_proj.weight"][3, 5] = float("nan")

    bad = edited_copy(model, tmp_path / "nanny", poison)
    with pytest.raises(HarnessError) as err:
        evaluate_model(str(bad), suite, OPTS, store=store, limit=4)
    line = err.value.line()
    assert "model nanny has 1 NaN/inf weights in model.layers.1.mlp.down_proj.weight" in line, line
    assert err.value.exit_code == 2 and "\n" not in line
    assert store.list_runs(status="complete") == []  # no complete run with a plausible score


def test_overflowing_model_fails_on_the_first_nonfinite_loglikelihood(
    results: Path, store, model: Path, suite, tmp_path: Path
) -> None:
    """Finite weights whose logits overflow to inf: every log-likelihood is NaN/-inf."""
    def overflow(sd) -> None:
        w = sd["lm_head.weight"]
        w.copy_(3e38 * ((w > 0).float() * 2 - 1))

    bad = edited_copy(model, tmp_path / "blowup", overflow)
    with pytest.raises(HarnessError) as err:
        evaluate_model(str(bad), suite, OPTS, store=store, limit=4)
    line = err.value.line()
    assert "model blowup gave a non-finite log-likelihood" in line and "doc 0" in line, line
    assert store.list_runs(status="complete") == []
    again = evaluate_model(str(model), suite, OPTS, store=store, limit=4)  # a good model still scores
    assert again.status == "complete"


def interrupted(target):
    """A progress hook that stops the run the way Ctrl-C does, before any answer."""
    raise KeyboardInterrupt


def test_failed_rerun_keeps_the_complete_run_visible_and_history(results: Path, store, model: Path, suite) -> None:
    from dataclasses import replace

    first = evaluate_model(str(model), suite, OPTS, store=store, limit=4)
    board = store.leaderboard()
    with pytest.raises(KeyboardInterrupt):
        evaluate_model(str(model), suite, replace(OPTS, progress=interrupted), store=store, limit=4, rerun=True)
    assert [r.run_id for r in store.list_runs()] == [first.run_id]  # the complete run is still there
    assert store.leaderboard()[["model_id", "task", "value", "run_id"]].equals(board[["model_id", "task", "value",
                                                                                     "run_id"]])
    attempts = store.list_runs(status=None)
    assert [r.status for r in attempts] == ["complete", "failed"] and attempts[1].run_id != first.run_id
    assert evaluate_model(str(model), suite, OPTS, store=store, limit=4).run_id == first.run_id  # reused
    redo = evaluate_model(str(model), suite, OPTS, store=store, limit=4, rerun=True)
    assert redo.status == "complete" and redo.run_id not in (first.run_id, attempts[1].run_id)
    assert set(store.leaderboard()["run_id"]) == {redo.run_id}  # the newest complete attempt is shown
    assert [r.status for r in store.list_runs(status=None)] == ["complete", "failed", "complete"]  # history kept
    assert evaluate_model(str(model), suite, OPTS, store=store, limit=4).run_id == redo.run_id


def pickle_copy(model: Path, dest: Path) -> Path:
    """The same model saved as a pickle checkpoint (pytorch_model.bin) only."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(model, dest)
    sd = load_file(str(dest / "model.safetensors"))
    (dest / "model.safetensors").unlink()
    torch.save(sd, dest / "pytorch_model.bin")
    return dest


def test_eval_refuses_pickle_checkpoints_unless_allowed(results: Path, store, model: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.factories import run_cli
    from tests.test_check import write_tiny_suite

    monkeypatch.setenv("HARNESS_SUITES", str(tmp_path / "suites"))
    write_tiny_suite(tmp_path / "suites")
    bin_model = pickle_copy(model, tmp_path / "pickled")
    args = ["eval", str(bin_model), "--suite", "tiny_mc", "--limit", "2", "--device", "cpu", "--dtype", "float32"]
    code, _, err = run_cli(*args)
    assert code == 2 and "only pickle weights (pytorch_model.bin)" in err and "--allow-pickle" in err, err
    assert store.list_runs(status=None) == []  # refused before any run
    code, _, err = run_cli(*args, "--allow-pickle")
    assert code == 0, err
    assert [r.status for r in store.list_runs(status=None)] == ["complete"]


def test_tqdm_disable_silences_the_engine_bars_without_a_progress_hook(results: Path, store, model: Path, suite,
                                                                        capfd: pytest.CaptureFixture,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """lm-eval passes `disable=` to its tqdm bars, which overrides TQDM_DISABLE: the runner passes it instead."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    evaluate_model(str(model), suite, OPTS, store=store, limit=4, use_cache=False)
    assert "Tokenizing inputs" in capfd.readouterr().err  # lm-eval's own bar
    monkeypatch.setenv("TQDM_DISABLE", "1")
    evaluate_model(str(model), suite, OPTS, store=store, limit=4, rerun=True, use_cache=False)
    assert "Tokenizing inputs" not in capfd.readouterr().err
