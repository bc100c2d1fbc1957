"""Full fine-tuning of a causal LM on a slice of instruction data, seeded, cached by what decides the weights.

    hp = FinetuneParams(epochs=2, batch=16, lr=1e-3, seed=0)
    done = finetune(base_dir, examples, hp, out_dir)      # FinetuneResult; a second call returns at once

`lora_rank > 0` trains LoRA adapters (peft) on `lora_targets` instead of every weight and merges them back before
saving, so the folder is an ordinary full model (what larger bases need: the optimiser holds the adapters only).
With LoRA, `l2` is exact too: the base is frozen, so the distance to it is the merged delta, scaling * B @ A, summed
over the adapted modules.

The loss is on the response only (the zoo's `example_loss`: cross-entropy per example, then averaged). `l2` adds
l2 * sum((w - w_base)^2) over every weight: vanilla fine-tuning "with L2 to the base". A loss that is not finite
stops the run with its step number and nothing written. (The L2 term's gradient is added to the loss's; the
reported loss leaves the term out.) The folder is written beside its final place and moved in
(harness.atomic), so a killed run leaves a finished model or none, and `finetune.json` (the hash of the base, the
data slice and the parameters) lets a re-run skip it.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.train.instructions import Example, slice_hash

if TYPE_CHECKING:
    import torch

RECORD = "finetune.json"
WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or shards (over 50 GB: 13B+ fp32)


@dataclass(frozen=True)
class FinetuneParams:
    epochs: float = 2.0
    batch: int = 16
    lr: float = 1e-3
    warmup: float = 0.1  # fraction of the steps
    l2: float = 0.0  # pull towards the base weights
    seed: int = 0
    lora_rank: int = 0  # 0: full fine-tuning
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    def identity(self) -> dict[str, Any]:
        """What decides the weights: the LoRA fields only when LoRA is on (full fine-tunes keep their keys)."""
        data = asdict(self)
        if not self.lora_rank:
            for k in ("lora_rank", "lora_alpha", "lora_targets"):
                data.pop(k)
        return data


@dataclass(frozen=True)
class FinetuneResult:
    path: Path
    key: str  # hash of base id + data slice + params
    steps: int
    tokens: int  # non-padding tokens seen
    seconds: float
    last_loss: float
    cached: bool

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


# How an example becomes tokens (harness.zoo.train.pair_ids): a fine-tune of another encoding is another model.
ENCODING = "lm-eval-pair"


def finetune_key(base_id: str, examples: list[Example], hp: FinetuneParams) -> str:
    return hash_json({"base": base_id, "slice": slice_hash(examples), "params": hp.identity(), "encoding": ENCODING})


def cached(out: Path, key: str) -> FinetuneResult | None:
    try:
        rec = json.loads((out / RECORD).read_text())
    except (OSError, ValueError):
        return None
    if rec.get("key") != key or not any((out / f).is_file() for f in WEIGHTS):
        return None
    t = rec["trained"]
    return FinetuneResult(out, key, t["steps"], t["tokens"], t["seconds"], t["last_loss"], cached=True)


def _factor(step: int, steps: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    done = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done))


def _add_l2_grad(params: list[torch.Tensor], ref: list[torch.Tensor], l2: float) -> None:
    """The gradient of l2 * sum((w - w_base)^2), added in place (no autograd graph over every weight)."""
    for p, r in zip(params, ref, strict=True):
        if p.grad is not None:
            p.grad.add_(p.detach() - r, alpha=2 * l2)


def _batches(n: int, hp: FinetuneParams) -> list[list[int]]:
    """Index batches: whole shuffled epochs (the last one partial when `epochs` is fractional)."""
    rng = random.Random(hp.seed)
    order: list[int] = []
    while len(order) < round(hp.epochs * n):
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    order = order[:max(1, round(hp.epochs * n))]
    return [order[i:i + hp.batch] for i in range(0, len(order), hp.batch)]


def with_lora(model: Any, hp: FinetuneParams) -> Any:
    """The model wrapped with fresh LoRA adapters (peft): only the adapters require gradients."""
    from peft import LoraConfig, get_peft_model

    missing = [t for t in hp.lora_targets if not any(n.endswith(f".{t}") for n, _ in model.named_modules())]
    if missing:
        raise HarnessError(f"LoRA targets {missing} are no module of {type(model).__name__}",
                           "set train.lora.targets to module names of the base (e.g. q_proj, v_proj)")
    config = LoraConfig(r=hp.lora_rank, lora_alpha=hp.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=list(hp.lora_targets))
    return get_peft_model(model, config)


def lora_delta_penalty(model: Any) -> torch.Tensor:
    """sum over adapted modules of ||scaling * B @ A||^2: the squared distance of the merged weights to the base."""
    terms = [(m.scaling[a] * m.lora_B[a].weight @ m.lora_A[a].weight).pow(2).sum()
             for m in model.modules() if hasattr(m, "lora_A") for a in m.lora_A]
    return sum(terms[1:], terms[0])


def train_loop(model: Any, tokenizer: Any, examples: list[Example], hp: FinetuneParams, name: str) -> tuple[int, float]:
    """AdamW, warmup then cosine to a tenth; returns (tokens seen, mean loss of the last ten steps, without the
    L2 term). A LoRA-wrapped model trains its adapters only."""
    import torch

    from harness.zoo.train import encode, example_loss

    torch.manual_seed(hp.seed)
    batches = _batches(len(examples), hp)
    if hp.lora_rank:
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = list(model.parameters())
        for p in params:
            p.requires_grad_(True)
    ref = [p.detach().clone() for p in params] if hp.l2 and not hp.lora_rank else []
    opt = torch.optim.AdamW(params, lr=hp.lr, betas=(0.9, 0.98), weight_decay=0.0)
    warm = max(1, round(hp.warmup * len(batches)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _factor(s, len(batches), warm))
    model.train()
    tokens, losses = 0, []
    for step, idx in enumerate(batches, 1):
        batch = encode(tokenizer, [examples[i].pair for i in idx])
        loss = example_loss(model, batch)
        if not math.isfinite(loss.item()):
            raise HarnessError(f"training {name} diverged: the loss is {loss.item()} at step {step} of "
                               f"{len(batches)}", "lower lr (or l2) in the study's config and run it again",
                               exit_code=1)
        opt.zero_grad(set_to_none=True)
        if hp.l2 and hp.lora_rank:
            (loss + hp.l2 * lora_delta_penalty(model)).backward()
        else:
            loss.backward()
        if ref:
            _add_l2_grad(params, ref, hp.l2)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        tokens += int(batch["attention_mask"].sum())
        losses.append(loss.item())
    model.eval()
    for p in params:
        p.requires_grad_(False)
    tail = losses[-10:]
    return tokens, sum(tail) / len(tail)


def _save(model: Any, tokenizer: Any, final: Path, record: dict, card: str) -> None:
    from harness.atomic import atomic_dir

    with atomic_dir(final) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card)
        (tmp / RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def finetune(base_dir: Path, base_id: str, examples: list[Example], hp: FinetuneParams, out: Path,
             meta: dict | None = None) -> FinetuneResult:
    """Fine-tune every weight of the model in `base_dir` on `examples` into `out` (or reuse `out`)."""
    key = finetune_key(base_id, examples, hp)
    if (hit := cached(out, key)) is not None:
        return hit
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if hp.lora_rank:
        torch.manual_seed(hp.seed)  # the adapters' initial weights: from the seed, not from what ran before
        model = with_lora(model, hp)
    start = time.perf_counter()
    tokens, last = train_loop(model, tokenizer, examples, hp, out.name)
    seconds = time.perf_counter() - start
    if hp.lora_rank:
        model = model.merge_and_unload()
    steps = len(_batches(len(examples), hp))
    record = {"key": key, "base": base_id, "slice": slice_hash(examples), "n_examples": len(examples),
              "params": hp.identity(), "meta": meta or {},
              "trained": {"steps": steps, "tokens": tokens, "seconds": round(seconds, 2), "last_loss": last}}
    how = f"LoRA (rank {hp.lora_rank}, merged back)" if hp.lora_rank else "Full"
    card = (f"---\nbase_model: {base_dir}\ntags: [fine-tune]\n---\n# {out.name}\n\n{how} fine-tune of {base_dir} on "
            f"{len(examples)} examples (slice {record['slice'][:12]}), {steps} steps, params {hp.identity()}.\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(model, tokenizer, out, record, card)
    return FinetuneResult(out, key, steps, tokens, seconds, last, cached=False)
