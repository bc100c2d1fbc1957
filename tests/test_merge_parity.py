"""Every method and option a user would write, merged by harness (folder path and in-memory path) against mergekit's
own run_merge, per tensor (torch.equal, same names, same dtypes) and per side file (config.json, tokenizer files):
the methods test_merge.py leaves out (della, breadcrumbs, model_stock, nuslerp, multislerp, karcher, sce, nearswap,
arcee_fusion, dare_linear), options (normalize, int8_mask, rescale, lambda, per-layer and per-filter gradients,
dtype / out_dtype, mixed-dtype parents), tokenizer merges over different vocabularies, tied and untied embeddings,
passthrough slices with scale, and sharded inputs."""

from __future__ import annotations

import json

import pytest

from tests.factories import WORDS, make_tiny_llama
from tests.test_merge import SMALL, assert_same, load_folder, mergekit_run_merge, write_recipe, zoo  # noqa: F401

pytestmark = pytest.mark.slow  # 30 merges each way: ~75 s on 2 CPUs


@pytest.fixture(scope="module")
def kin(zoo, tmp_path_factory) -> dict[str, str]:  # noqa: F811
    """The session's tiny models plus variants: a larger vocabulary, tied embeddings, bfloat16, sharded files."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("kin")
    out = {k: str(v) for k, v in zoo.items()}
    # one word more: mergekit numbers the new words of a union in the order of a Rust HashMap (random per call),
    # so with two or more the union's ids, and the embedding rows, differ between runs of mergekit itself
    out["vocab"] = str(make_tiny_llama(root / "vocab", seed=5, words=[*WORDS, "zebra"], **SMALL))
    out["tied"] = str(make_tiny_llama(root / "tied", seed=6, tie=True, **SMALL))
    out["tied2"] = str(make_tiny_llama(root / "tied2", seed=7, tie=True, **SMALL))
    out["bf16"] = str(make_tiny_llama(root / "bf16", seed=8, dtype="bfloat16", **SMALL))
    model = AutoModelForCausalLM.from_pretrained(zoo["m1"], dtype=torch.float32)
    model.save_pretrained(root / "sharded", max_shard_size="40KB")
    AutoTokenizer.from_pretrained(zoo["m1"]).save_pretrained(root / "sharded")
    assert len(list((root / "sharded").glob("*.safetensors"))) > 2
    out["sharded"] = str(root / "sharded")
    return out


def w(model: str, **params) -> dict:
    return {"model": model, "parameters": params} if params else {"model": model}


def cases(k: dict[str, str]) -> dict[str, tuple[dict, int]]:
    m0, m1, m2 = k["m0"], k["m1"], k["m2"]
    grad = [0.0, 0.4, 1.0]
    ta = {"base_model": m0}
    return {
        "linear_nonorm": ({"merge_method": "linear", "parameters": {"normalize": False},
                           "models": [w(m1, weight=0.3), w(m2, weight=0.9)]}, 0),
        "linear_filters": ({"merge_method": "linear", "models": [
            w(m1, weight=[{"filter": "self_attn", "value": grad}, {"value": 0.5}]), w(m2, weight=0.5)]}, 0),
        "linear_out_dtype": ({"merge_method": "linear", "dtype": "float32", "out_dtype": "bfloat16",
                              "models": [w(m1, weight=0.3), w(m2, weight=0.7)]}, 0),
        "linear_mixed_dtypes": ({"merge_method": "linear", "base_model": m1,
                                 "models": [w(m1, weight=0.5), w(k["bf16"], weight=0.5)]}, 0),
        "linear_sharded_input": ({"merge_method": "linear", "models": [w(k["sharded"], weight=0.3),
                                                                       w(m2, weight=0.7)]}, 0),
        "task_arithmetic_lambda": ({"merge_method": "task_arithmetic", **ta, "parameters": {"lambda": 0.7,
                                    "normalize": True}, "models": [w(m1, weight=0.6), w(m2, weight=-0.4)]}, 0),
        "ties_int8_nonorm": ({"merge_method": "ties", **ta, "parameters": {"int8_mask": True, "normalize": False},
                              "models": [w(m1, weight=0.5, density=0.3), w(m2, weight=0.8, density=[0.2, 0.9])]}, 0),
        "ties_bf16": ({"merge_method": "ties", **ta, "dtype": "bfloat16",
                       "models": [w(m1, weight=0.5, density=0.5), w(m2, weight=0.5, density=0.7)]}, 0),
        "dare_ties_norescale_fp16": ({"merge_method": "dare_ties", **ta, "dtype": "float16",
                                      "parameters": {"rescale": False, "int8_mask": True},
                                      "models": [w(m1, weight=0.5, density=0.5), w(m2, weight=0.5, density=0.7)]}, 9),
        "dare_linear": ({"merge_method": "dare_linear", **ta,
                         "models": [w(m1, weight=grad, density=0.4), w(m2, weight=0.4, density=0.8)]}, 5),
        "della": ({"merge_method": "della", **ta, "parameters": {"lambda": 0.9}, "models": [
            w(m1, weight=0.5, density=0.5, epsilon=0.1), w(m2, weight=0.5, density=0.6, epsilon=0.15)]}, 7),
        "della_linear": ({"merge_method": "della_linear", **ta, "models": [
            w(m1, weight=0.5, density=0.5, epsilon=0.1), w(m2, weight=0.5, density=0.6, epsilon=0.15)]}, 7),
        "breadcrumbs": ({"merge_method": "breadcrumbs", **ta, "models": [
            w(m1, weight=0.5, density=0.8, gamma=0.05), w(m2, weight=0.5, density=0.7, gamma=0.02)]}, 0),
        "breadcrumbs_ties": ({"merge_method": "breadcrumbs_ties", **ta, "models": [
            w(m1, weight=0.5, density=0.8, gamma=0.05), w(m2, weight=0.5, density=0.7, gamma=0.02)]}, 0),
        "slerp_filters": ({"merge_method": "slerp", "base_model": m1, "models": [w(m1), w(m2)], "parameters": {
            "t": [{"filter": "self_attn", "value": [0, 0.7, 1]}, {"filter": "mlp", "value": [1, 0.3]},
                  {"value": 0.5}]}}, 0),
        "model_stock": ({"merge_method": "model_stock", **ta, "models": [w(m1), w(m2), w(k["sharded"])]}, 0),
        "nuslerp": ({"merge_method": "nuslerp", "models": [w(m1, weight=0.3), w(m2, weight=0.7)]}, 0),
        "nuslerp_base_rowwise": ({"merge_method": "nuslerp", **ta, "parameters": {"nuslerp_row_wise": True},
                                  "models": [w(m1, weight=0.4), w(m2, weight=0.6)]}, 0),
        "multislerp": ({"merge_method": "multislerp", "base_model": m1,
                        "models": [w(m1, weight=0.3), w(m2, weight=0.7)]}, 0),
        "karcher": ({"merge_method": "karcher", "base_model": m0, "models": [w(m0), w(m1), w(m2)]}, 0),
        "sce": ({"merge_method": "sce", **ta, "parameters": {"select_topk": 0.5}, "models": [w(m1), w(m2)]}, 0),
        "nearswap": ({"merge_method": "nearswap", **ta, "models": [w(m0), w(m1)], "parameters": {"t": 0.001}}, 0),
        "arcee_fusion": ({"merge_method": "arcee_fusion", **ta, "models": [w(m0), w(m1)]}, 3),
        "passthrough_scale": ({"merge_method": "passthrough", "slices": [
            {"sources": [{"model": m1, "layer_range": [0, 2]}]},
            {"sources": [{"model": m2, "layer_range": [1, 2],
                          "parameters": {"scale": [{"filter": "o_proj", "value": 0.0}, {"value": 1.0}]}}]}]}, 0),
        "slices_linear": ({"merge_method": "linear", "slices": [
            {"sources": [{"model": m1, "layer_range": [0, 1], "parameters": {"weight": 0.7}},
                         {"model": m2, "layer_range": [0, 1], "parameters": {"weight": 0.3}}]},
            {"sources": [{"model": m1, "layer_range": [1, 2], "parameters": {"weight": 0.2}},
                         {"model": m2, "layer_range": [1, 2], "parameters": {"weight": 0.8}}]}]}, 0),
        "tokenizer_union_base": ({"merge_method": "task_arithmetic", "base_model": m1,
                                  "tokenizer": {"source": "union"},
                                  "models": [w(k["vocab"], weight=0.5), w(m2, weight=0.5)]}, 0),
        "tokenizer_base_dare": ({"merge_method": "dare_ties", "base_model": m1, "tokenizer_source": "base",
                                 "models": [w(k["vocab"], weight=0.5, density=0.6), w(m2, weight=0.5, density=0.5)]},
                                2),
        "tokenizer_from_model": ({"merge_method": "slerp", "base_model": m1, "tokenizer_source": k["vocab"],
                                  "models": [w(m1), w(k["vocab"])], "parameters": {"t": 0.4}}, 0),
        "tied_embeddings": ({"merge_method": "ties", "base_model": k["tied"],
                             "models": [w(k["tied2"], weight=0.7, density=0.5)]}, 0),
        "untied_on_tied_base": ({"merge_method": "task_arithmetic", "base_model": k["tied"],
                                 "models": [w(m1, weight=0.5), w(k["tied2"], weight=0.5)]}, 0),
    }


CASES = list(cases({k: "x" for k in ("m0", "m1", "m2", "vocab", "tied", "tied2", "bf16", "sharded")}))
SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@pytest.mark.parametrize("case", CASES)
def test_every_method_and_option_equals_mergekit(case, kin, store, results, tmp_path):
    from harness.merge import InMemoryMerger, merge_to_folder

    recipe, seed = cases(kin)[case]
    path = write_recipe(tmp_path, case, recipe)
    ours = merge_to_folder(path, seed=seed, store=store).path
    peer = tmp_path / "peer"
    tensors = load_folder(ours)
    assert_same(tensors, mergekit_run_merge(recipe, peer, seed=seed))
    for name in SIDE_FILES:
        assert (ours / name).is_file() == (peer / name).is_file(), name
        if name.endswith(".json") and (peer / name).is_file():
            assert json.loads((ours / name).read_text()) == json.loads((peer / name).read_text()), name
    assert_same(InMemoryMerger(store=store, seed=seed).merge(path), tensors)
