"""Fisher-weighted averaging: the mergekit method against a hand computation, the estimate against squared
gradients, and a recipe end to end (folder and in-memory)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests import test_merge as shared

zoo = shared.zoo  # the session's tiny models, built once for all merge tests

TEXTS = ["tom has 3 apples and ana has 5 pears", "how many cats has bob ?", "kim buys 2 books . what is left ?"]


@pytest.fixture(scope="module")
def pair(zoo) -> tuple[Path, Path]:
    return zoo["m0"], zoo["m1"]


def test_fisher_method_is_registered_in_mergekit_and_matches_hand_formula(tmp_path):
    import torch
    from mergekit import merge_methods
    from safetensors.torch import save_file

    from harness.merge.methods import register_methods

    register_methods()
    register_methods()  # idempotent
    method = merge_methods.get("fisher")
    g = torch.Generator().manual_seed(0)
    t1, t2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    f1, f2 = torch.rand(4, 3, generator=g), torch.rand(4, 3, generator=g)
    f2[0, 0] = 0.0
    f1[0, 0] = 0.0  # both zero: falls back to the weighted average through epsilon
    save_file({"w": f1}, str(tmp_path / "f1.safetensors"))
    save_file({"w": f2}, str(tmp_path / "f2.safetensors"))
    out = merge_methods.merge_tensors(
        [t1, t2], method, name="w",
        parameters={"fisher": [str(tmp_path / "f1.safetensors"), str(tmp_path / "f2.safetensors")],
                    "weight": [1.0, 3.0]},
    )
    eps = 1e-8
    hand = (1.0 * (f1 + eps) * t1 + 3.0 * (f2 + eps) * t2) / (1.0 * (f1 + eps) + 3.0 * (f2 + eps))
    assert torch.allclose(out, hand, atol=1e-6)
    assert torch.allclose(out[0, 0], (t1[0, 0] + 3 * t2[0, 0]) / 4, atol=1e-6)
    with pytest.raises(ValueError, match="has no tensor"):
        merge_methods.merge_tensors([t1, t2], method, name="other",
                                    parameters={"fisher": [str(tmp_path / "f1.safetensors")] * 2})


def test_fisher_estimate_is_mean_squared_gradient(pair, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.merge.fisher import estimate_fisher

    a, _ = pair
    path = estimate_fisher(a, TEXTS, tmp_path / "fa.safetensors")
    fisher = load_file(str(path))
    model = AutoModelForCausalLM.from_pretrained(a, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(a)
    name = "model.layers.0.mlp.up_proj.weight"
    param = dict(model.named_parameters())[name]
    hand = torch.zeros_like(param)
    for text in TEXTS:
        model.zero_grad()
        ids = tok(text, return_tensors="pt")["input_ids"]
        model(input_ids=ids, labels=ids).loss.backward()
        hand += param.grad**2
    assert torch.allclose(fisher[name], hand / len(TEXTS), rtol=1e-4, atol=1e-12)
    assert set(fisher) >= {n for n, _ in model.named_parameters()}
    assert float(fisher[name].sum()) > 0


def test_fisher_recipe_end_to_end(pair, store, results, tmp_path):
    import torch
    from safetensors.torch import load_file

    from harness.merge import InMemoryMerger, merge_to_folder

    a, b = pair
    (tmp_path / "texts.txt").write_text("\n".join(TEXTS) + "\n")
    recipe = tmp_path / "fisher.yaml"
    recipe.write_text(yaml.safe_dump({
        "merge_method": "fisher", "dtype": "float32", "fisher": {"data": "texts.txt", "samples": 3},
        "models": [{"model": str(a), "parameters": {"weight": 1.0}}, {"model": str(b), "parameters": {"weight": 2.0}}],
    }))
    res = merge_to_folder(recipe, store=store)
    merged = load_file(str(res.path / "model.safetensors"))
    used = yaml.safe_load((res.path / "mergekit_config.yml").read_text())
    fa, fb = (load_file(m["parameters"]["fisher"]) for m in used["models"])
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    eps = 1e-8
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.norm.weight", "lm_head.weight"):
        wa, wb = 1.0 * (fa[name] + eps), 2.0 * (fb[name] + eps)
        assert torch.allclose(merged[name], (wa * ta[name] + wb * tb[name]) / (wa + wb), atol=1e-6), name
    # the cached Fisher files are reused: same id, cache hit
    assert merge_to_folder(recipe, store=store).cached
    mem = InMemoryMerger(store=store).merge(recipe)
    assert all(torch.equal(mem[k], merged[k]) for k in merged)
