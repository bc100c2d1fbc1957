"""Training the zoo: the model shape, batches of text or question/answer pairs, and one small training loop.

`train` updates only what a `Trainable` allows: the whole model, the transformer body (embeddings frozen; they
are tied to the output head), or chosen rows of the embedding matrix. That choice is what makes the zoo's experts
composable: zoo-math changes only the body, zoo-lang only the L rows of the embeddings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

# (prompt, completion): loss only on the completion (and the end token). An empty prompt means plain LM text.
Example = tuple[str, str]


@dataclass(frozen=True)
class Shape:
    """The zoo's LlamaForCausalLM shape: head_dim 64, which vLLM's CPU attention kernels accept."""

    hidden: int = 128
    heads: int = 2
    layers: int = 4
    intermediate: int = 256
    max_positions: int = 256

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass(frozen=True)
class Trainable:
    what: Literal["all", "body", "embed_rows"]
    rows: tuple[int, ...] = ()  # for embed_rows
    like: tuple[int, ...] = ()  # for embed_rows: after each step, no trained row is longer than these rows' mean norm


@dataclass(frozen=True)
class Schedule:
    steps: int
    lr: float
    batch: int = 64
    warmup: int = 50


def new_model(tokenizer: PreTrainedTokenizerFast, shape: Shape, seed: int) -> LlamaForCausalLM:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    vocab = (len(tokenizer) + 63) // 64 * 64
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.heads,
        head_dim=shape.head_dim, max_position_embeddings=shape.max_positions, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, dtype="float32",
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


# What lm-eval puts between a context and its target (`target_delimiter`, " " unless a task names another).
TARGET_DELIMITER = " "


def pair_ids(tokenizer: PreTrainedTokenizerFast, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """A prompt's and its completion's token ids as lm-eval scores them (TemplateLM._encode_pair): the completion
    after the target delimiter, trailing spaces of the prompt moved to it, and the whole text encoded at once (a
    BPE tokenizer reads " 11" as "Ġ11", not as ":" then "11"), so a fine-tune learns the tokens it is tested on."""
    if not prompt:
        return [], tokenizer(completion, add_special_tokens=False)["input_ids"]
    completion = TARGET_DELIMITER + completion
    spaces = len(prompt) - len(prompt.rstrip())
    if spaces:
        prompt, completion = prompt[:-spaces], prompt[-spaces:] + completion
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return p, tokenizer(prompt + completion, add_special_tokens=False)["input_ids"][len(p):]


def encode(tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and labels (-100 on prompt and padding)."""
    import torch

    rows, labels = [], []
    for prompt, completion in examples:
        p, c = pair_ids(tokenizer, prompt, completion)
        c = c + [tokenizer.eos_token_id]
        rows.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    lab = torch.tensor([r + [-100] * (width - len(r)) for r in labels])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def _parameters(model: LlamaForCausalLM, trainable: Trainable) -> tuple[list[torch.nn.Parameter], list]:
    """The parameters to train, and the gradient hooks to remove afterwards."""
    import torch

    embed = model.get_input_embeddings().weight
    for p in model.parameters():
        p.requires_grad_(False)
    hooks = []
    if trainable.what == "all":
        params = list(model.parameters())
    elif trainable.what == "body":
        params = [p for p in model.parameters() if p is not embed]
    else:
        params = [embed]
    for p in params:
        p.requires_grad_(True)
    if trainable.what == "embed_rows":
        keep = torch.zeros(embed.shape[0], 1)
        keep[list(trainable.rows)] = 1.0
        hooks.append(embed.register_hook(lambda g: g * keep))
    return params, hooks


def _cap_rows(model: LlamaForCausalLM, trainable: Trainable) -> None:
    """Scale down any trained row longer than the mean norm of the `like` rows (frozen, so the cap is fixed)."""
    import torch

    embed = model.get_input_embeddings().weight
    with torch.no_grad():
        cap = embed[list(trainable.like)].norm(dim=1).mean()
        rows = list(trainable.rows)
        norms = embed[rows].norm(dim=1, keepdim=True)
        embed[rows] *= torch.clamp(cap / norms, max=1.0)


def example_loss(model: LlamaForCausalLM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy averaged per example, then over the batch: a one-token answer weighs as much as a story."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    tokens = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    counts = (labels != -100).sum(1).clamp(min=1)
    return (tokens.sum(1) / counts).mean()


def train(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, batches: Callable[[random.Random, int], list[Example]],
    schedule: Schedule, trainable: Trainable, seed: int, progress: Callable[[int], None] | None = None,
) -> list[float]:
    """AdamW (no weight decay, so frozen rows stay exactly as they were), warmup then cosine decay.

    `batches(rng, n)` returns n fresh examples; the rng is seeded from `seed`, so a run is reproducible.
    Returns the loss of every step.
    """
    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    params, hooks = _parameters(model, trainable)
    opt = torch.optim.AdamW(params, lr=schedule.lr, betas=(0.9, 0.98), weight_decay=0.0)

    def factor(step: int) -> float:
        if step < schedule.warmup:
            return (step + 1) / schedule.warmup
        done = (step - schedule.warmup) / max(1, schedule.steps - schedule.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    model.train()
    losses = []
    for _ in range(schedule.steps):
        loss = example_loss(model, encode(tokenizer, batches(rng, schedule.batch)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if trainable.like:
            _cap_rows(model, trainable)
        losses.append(loss.item())
        if progress:
            progress(1)
    model.eval()
    for h in hooks:
        h.remove()
    for p in model.parameters():
        p.requires_grad_(False)
    return losses
