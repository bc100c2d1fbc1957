"""Every bad input gives one HarnessError line, and leaves no folder behind and no merge in the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from tests import test_merge as shared

zoo = shared.zoo  # the session's tiny models, built once for all merge tests

def variant(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def linear(a: Path | str, b: Path | str, **extra) -> dict:
    return {"merge_method": "linear", "models": [
        {"model": str(a), "parameters": {"weight": 0.5}}, {"model": str(b), "parameters": {"weight": 0.5}}], **extra}


def assert_nothing_left(results: Path, store) -> None:
    merges = results / "merges"
    assert not merges.exists() or not any(merges.iterdir()), list(merges.iterdir())
    assert store.list_models("merge") == []


def fails(recipe, store, results, *words, **kw) -> str:
    from harness.merge import merge_to_folder

    with pytest.raises(HarnessError) as info:
        merge_to_folder(recipe, store=store, **kw)
    line = info.value.line()
    assert "\n" not in line
    for w in words:
        assert w in line, line
    assert_nothing_left(results, store)
    return line


def test_unknown_method_did_you_mean(zoo, store, results):
    fails({**linear(zoo["m0"], zoo["m1"]), "merge_method": "dare_tie"}, store, results,
          "unknown merge method 'dare_tie'", "did you mean 'dare_ties'")


def test_missing_model(zoo, store, results):
    fails(linear(zoo["m0"], "/nowhere/model"), store, results, "no model '/nowhere/model'")
    fails(linear(zoo["m0"], "zoo-mathh"), store, results, "zoo-mathh")


def test_recipe_problems(zoo, store, results, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("merge_method: linear\nmodels: [oops\n")
    fails(bad, store, results, "not valid YAML")
    fails({"merge_method": "linear"}, store, results, "exactly one of models:")
    fails(str(tmp_path / "missing.yaml"), store, results, "no recipe file")
    loop = tmp_path / "loop.yaml"
    loop.write_text(yaml.safe_dump(linear(zoo["m0"], "loop.yaml")))
    fails(loop, store, results, "refers to itself")


def test_pickle_only_checkpoint_refused_unless_allowed(zoo, store, results, tmp_path):
    import torch
    from safetensors.torch import load_file

    pick = variant(zoo["m1"], tmp_path / "pickled")
    sd = load_file(str(pick / "model.safetensors"))
    (pick / "model.safetensors").unlink()
    torch.save(sd, pick / "pytorch_model.bin")
    fails(linear(zoo["m0"], pick), store, results, "only pickle weights", "--allow-pickle")
    from harness.merge import merge_to_folder

    assert merge_to_folder(linear(zoo["m0"], pick), store=store, allow_pickle=True).path.is_dir()


def test_architectures_differ(zoo, store, results, tmp_path):
    other = variant(zoo["m1"], tmp_path / "mistral")
    cfg = json.loads((other / "config.json").read_text())
    cfg["architectures"] = ["MistralForCausalLM"]
    (other / "config.json").write_text(json.dumps(cfg))
    fails(linear(zoo["m0"], other), store, results, "architectures differ", "MistralForCausalLM")


def test_tensor_shapes_differ(zoo, store, results):
    fails(linear(zoo["m0"], zoo["wide"]), store, results, "tensor shapes differ", "mlp", "[64, 128]", "[64, 192]")


def test_tokenizers_differ_names_tokens_and_mergekit_option(zoo, store, results, tmp_path):
    other = variant(zoo["m1"], tmp_path / "othertok")
    tj = json.loads((other / "tokenizer.json").read_text())
    vocab = tj["model"]["vocab"]
    vocab["oranges"] = vocab.pop("apples")
    (other / "tokenizer.json").write_text(json.dumps(tj))
    fails(linear(zoo["m0"], other), store, results, "tokenizers differ", "'apples' vs 'oranges'",
          "tokenizer: {source: union}")


def test_nan_result_is_refused(zoo, store, results, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    sick = variant(zoo["m1"], tmp_path / "nan")
    sd = load_file(str(sick / "model.safetensors"))
    sd["model.layers.0.mlp.up_proj.weight"][0, 0] = float("nan")
    sd["model.norm.weight"][1] = float("inf")
    save_file(sd, str(sick / "model.safetensors"), metadata={"format": "pt"})
    fails(linear(zoo["m0"], sick), store, results, "NaN/inf")
    from harness.merge import InMemoryMerger

    with pytest.raises(HarnessError, match="NaN/inf"):
        InMemoryMerger(store=store).merge(linear(zoo["m0"], sick))
    assert torch.isnan(sd["model.layers.0.mlp.up_proj.weight"]).any()


def test_out_folder_that_exists_is_not_overwritten(zoo, store, results, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    from harness.merge import merge_to_folder

    with pytest.raises(HarnessError, match="already exists"):
        merge_to_folder(linear(zoo["m0"], zoo["m1"]), out, store=store)
    assert (out / "keep.txt").read_text() == "mine" and store.list_models("merge") == []


def _harness_cli(args: list[str], results: Path, preexec=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_RESULTS": str(results), "HARNESS_DB": str(results / "harness.duckdb")}
    exe = Path(sys.executable).parent / "harness"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, preexec_fn=preexec)


def test_disk_full_mid_write(zoo, store, results):
    """A real failed write: while merging, no file may grow past 64 KiB (RLIMIT_FSIZE; Python ignores SIGXFSZ,
    so the write fails with EFBIG inside mergekit's tensor writer)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    store.init()
    from harness.merge import merge_to_folder

    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))
    try:
        with pytest.raises(HarnessError) as info:
            merge_to_folder(linear(zoo["m0"], zoo["m1"]), store=store)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert info.value.line().startswith("disk full while writing"), info.value.line()
    assert_nothing_left(results, store)


@pytest.mark.slow
def test_disk_full_cli_exit_code(zoo, store, results, tmp_path):
    """The same through `harness merge` in a child process: one error line, non-zero exit."""
    import resource

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(linear(zoo["m0"], zoo["m1"])))

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    out = _harness_cli(["merge", str(recipe)], results, preexec=limit)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: disk full"), out.stderr
    assert_nothing_left(results, store)


@pytest.mark.slow
def test_disk_full_on_a_small_tmpfs(zoo, store, results, tmp_path):
    """ENOSPC for real: --out on a 256 KiB tmpfs (needs root and mount; skipped otherwise)."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(yaml.safe_dump(linear(zoo["m0"], zoo["m1"])))
        out = _harness_cli(["merge", str(recipe), "--out", str(small / "merged")], results)
        assert out.returncode != 0 and "disk full" in out.stderr, out.stderr
        assert list(small.iterdir()) == []
        assert store.list_models("merge") == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_nonfinite_sums_in_the_tensors_own_dtype_and_still_finds_every_bad_value():
    """The finite check sums each tensor in its own dtype (no float32 copy); a sum that overflows the dtype while
    every value is finite is looked at element by element and passes; one NaN or inf anywhere is found and counted."""
    import torch

    from harness.weights import nonfinite

    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        big = torch.full((4096,), torch.finfo(dtype).max / 2, dtype=dtype)  # finite values whose sum overflows
        assert bool(torch.isinf(big.sum()))
        assert nonfinite([("big", big), ("empty", torch.empty(0, dtype=dtype))]) is None
        for bad in (float("nan"), float("inf"), float("-inf")):
            t = torch.randn(3, 1000).to(dtype)
            t[2, 999] = bad
            t[0, 5] = bad
            assert nonfinite([("ok", torch.ones(3, dtype=dtype)), ("w", t)]) == ("w", 2)


def test_a_recipe_mapping_yaml_cannot_write_is_refused_when_loaded(zoo, store, results):
    """A recipe passed as a mapping (library callers) with a numpy number, a tuple or a Path in it: one line that
    names where, when it is loaded, nothing merged; before, the merge ran and failed when its card was written."""
    import numpy as np

    from harness.merge.recipe import load_recipe

    def recipe(weight, models=list):
        return {"merge_method": "linear", "dtype": "float32",
                "models": models([{"model": str(zoo[m]), "parameters": {"weight": weight}} for m in ("m0", "m1")])}

    for bad, where in ((recipe(np.float64(0.5)), "recipe.models[0].parameters.weight is a numpy.float64"),
                       (recipe(0.5, tuple), "recipe.models is a tuple"),
                       (recipe(Path("x")), "recipe.models[0].parameters.weight is a pathlib.")):
        assert fails(bad, store, results, where, "plain values").startswith(where)
    assert load_recipe(recipe(0.5)).data["models"][0]["parameters"]["weight"] == 0.5
