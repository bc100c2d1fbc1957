"""Real variants of a real model: LoRA fine-tunes (peft) on short texts, merged back into full float32 weights and
saved as an ordinary folder, so mergekit can combine them. Content-addressed: the same base, texts and settings
give the same folder, made once, registered with a finetuned_from edge to the base."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.hashing import hash_json
from harness.paths import results_dir

if TYPE_CHECKING:
    from harness.store import ModelRecord, Store


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 40
    batch_size: int = 4
    max_tokens: int = 96
    learning_rate: float = 2e-3
    rank: int = 8
    alpha: int = 16
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    seed: int = 0


def finetune(base: Path, texts: list[str], out: Path, cfg: FinetuneConfig) -> list[float]:
    """Train LoRA adapters on `texts` (next-token loss on every real token), merge them in, save to `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.models.gguf import save_tokenizer
    from harness.train.finetune import FinetuneParams, with_lora

    torch.manual_seed(cfg.seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    tuned = with_lora(model, FinetuneParams(lora_rank=cfg.rank, lora_alpha=cfg.alpha,
                                            lora_targets=tuple(cfg.target_modules)))
    tuned.train()
    opt = torch.optim.AdamW([p for p in tuned.parameters() if p.requires_grad], lr=cfg.learning_rate)
    losses = []
    for step in range(cfg.steps):
        start = (step * cfg.batch_size) % len(texts)
        batch = (texts + texts)[start:start + cfg.batch_size]
        enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=cfg.max_tokens)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = tuned(**enc, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    merged = tuned.merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tok, out)
    return losses


def finetune_registered(base: str, texts: list[str], name: str, store: Store,
                        cfg: FinetuneConfig | None = None) -> ModelRecord:
    """Fine-tune a registered model or folder (once per base, texts and settings) and register the variant."""
    from harness.evaluate.target import resolve_model
    from harness.identity import model_id as model_hash
    from harness.merge.engine import staging
    from harness.store import LineageEdge, ModelRecord

    cfg = cfg or FinetuneConfig()
    parent = resolve_model(base, store)
    key = hash_json({"base": parent.model_id, "texts": texts, "config": asdict(cfg), "format": 1})
    final = results_dir() / "finetunes" / key[:24]
    losses: list[float] = []
    if not (final / "config.json").is_file():
        with staging(final) as tmp:
            losses = finetune(Path(str(parent.path)), texts, tmp, cfg)
    model_id = model_hash(final)
    meta = {"finetune": asdict(cfg), "texts": len(texts), "texts_hash": hash_json(texts), "key": key}
    if losses:
        meta["loss_first_last"] = [losses[0], losses[-1]]
    arch = (json.loads((final / "config.json").read_text()).get("architectures") or [None])[0]
    store.add_model(ModelRecord(model_id=model_id, name=name, path=str(final), kind="source",
                                source=f"LoRA fine-tune of {parent.name}", architecture=arch,
                                meta=meta))
    store.add_lineage([LineageEdge(model_id, parent.model_id, "finetuned_from", params={"texts": len(texts)})])
    return store.get_model(model_id)
