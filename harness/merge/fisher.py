"""Diagonal Fisher estimation for Fisher-weighted merging (Matena & Raffel, NeurIPS 2022).

For each text of a small sample, the gradient g of the mean token log-likelihood (the text's own tokens as
labels: the empirical Fisher) is taken; the Fisher estimate is mean(g**2) over texts, one tensor per weight
name (tied weights under each of their names). It is saved as safetensors, which the `fisher` merge method
(harness.merge.methods.fisher_merge) reads. A recipe may instead carry `fisher: {data: FILE}` and let harness
estimate and cache the files (results/cache/fisher/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import atomic_file
from harness.errors import HarnessError
from harness.hashing import hash_json, sha256_file
from harness.paths import cache_dir

if TYPE_CHECKING:
    from harness.merge.recipe import Recipe
    from harness.merge.resolve import Resolver

DEFAULT_SAMPLES = 64
DEFAULT_MAX_LENGTH = 256


def load_texts(path: str | Path, limit: int | None = None) -> list[str]:
    """Texts from a .txt (one per non-empty line) or .jsonl file (field `text`, else the first string field)."""
    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"no Fisher data file {p}", "pass a .txt or .jsonl file of texts")
    texts: list[str] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if p.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HarnessError(f"{p}:{n} is not JSON", "one JSON object per line") from exc
            text = row.get("text") if isinstance(row, dict) else None
            text = text or next((v for v in (row.values() if isinstance(row, dict) else []) if isinstance(v, str)),
                                None)
            if not text:
                raise HarnessError(f"{p}:{n} has no text field", 'write {"text": "..."} per line')
            texts.append(text)
        else:
            texts.append(line.strip())
        if limit and len(texts) >= limit:
            break
    if not texts:
        raise HarnessError(f"{p} holds no texts", "add one text per line")
    return texts


def estimate_fisher(model_dir: str | Path, texts: list[str], out: str | Path, *, max_length: int = DEFAULT_MAX_LENGTH,
                    device: str = "cpu") -> Path:
    """Estimate the diagonal (empirical) Fisher of a causal LM on `texts` and save it to `out` (safetensors)."""
    if not (Path(model_dir) / "config.json").is_file():  # else transformers reads the path as a hub repo id
        raise HarnessError(f"no model folder at {model_dir}", "pass a model folder (config.json and safetensors)")
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, trust_remote_code=False,
                                                 use_safetensors=True).to(device)
    model.eval()
    named = list(model.named_parameters(remove_duplicate=False))
    acc = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in named}
    for text in texts:
        ids = tok(text, return_tensors="pt", truncation=True, max_length=max_length)["input_ids"].to(device)
        if ids.shape[1] < 2:
            continue
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        for n, p in named:
            if p.grad is not None:
                acc[n].add_(p.grad.detach().to(torch.float32) ** 2)
    fisher = {n: (a / len(texts)).contiguous().cpu() for n, a in acc.items()}
    out = Path(out)
    with atomic_file(out, suffix=".safetensors") as tmp:
        save_file(fisher, str(tmp), metadata={"texts": str(len(texts)), "max_length": str(max_length)})
    return out


def fisher_settings(spec: Any) -> dict[str, Any]:
    """The recipe's `fisher:` block: a data file, or {data, samples, max_length}."""
    spec = {"data": spec} if isinstance(spec, str) else dict(spec)
    if "data" not in spec:
        raise HarnessError("the recipe's fisher: block needs data: FILE", "e.g. fisher: {data: texts.jsonl}")
    unknown = set(spec) - {"data", "samples", "max_length"}
    if unknown:
        raise HarnessError(f"unknown fisher: setting(s) {sorted(unknown)}", "use data, samples, max_length")
    return {"samples": DEFAULT_SAMPLES, "max_length": DEFAULT_MAX_LENGTH, **spec}


def attach_fisher(data: dict[str, Any], recipe: Recipe, resolver: Resolver) -> None:
    """Give every model of a `fisher` recipe a `fisher:` file, estimating (and caching) the missing ones."""
    from harness.merge.recipe import ref_text

    if data.get("merge_method") != "fisher" or not data.get("models"):
        raise HarnessError("fisher: data applies to `merge_method: fisher` recipes with models:",
                           "remove the fisher: block or use merge_method: fisher")
    cfg = fisher_settings(recipe.extras["fisher"])
    data_path = Path(cfg["data"]) if Path(cfg["data"]).is_absolute() else recipe.base_dir / cfg["data"]
    texts = load_texts(data_path, cfg["samples"])
    data_hash = sha256_file(data_path).hexdigest()
    for entry in data["models"]:
        params = entry.setdefault("parameters", {}) or {}
        entry["parameters"] = params
        if "fisher" in params:
            continue
        folder, known_id, _ = resolver.locate(ref_text(entry["model"]), recipe.base_dir)
        mid, _, _ = resolver.identify(folder, known_id)
        out = cache_dir() / "fisher" / (hash_json([mid, data_hash, cfg["samples"], cfg["max_length"]]) + ".safetensors")
        if not out.is_file():
            estimate_fisher(folder, texts, out, max_length=cfg["max_length"])
        params["fisher"] = str(out)
