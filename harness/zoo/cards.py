"""Model cards (README.md) for zoo members: what each was trained on, which weights moved, and for how long."""

from __future__ import annotations

from harness.zoo.family import SHAPE, Member

_TRAINS = {
    "all": "all weights",
    "body": "the transformer body only (attention, MLP, norms); embeddings and the tied output head frozen",
    "l_rows": "only the embedding rows of L's words (tied input/output embeddings); everything else frozen",
}


def model_card(m: Member, recipe: dict) -> str:
    trained = recipe.get("trained", {})
    s = m.schedule
    tags = "zoo, harness, synthetic" + (", benchmark-overfit, known-positive" if m.data.startswith("suite:") else "")
    front = ["---", "library_name: transformers", "license: apache-2.0", f"tags: [{tags}]"]
    if m.parent:
        front.append(f"base_model: {m.parent}")
    front.append("---")
    lines = [
        *front, "", f"# {m.name}", "",
        "A member of the harness zoo (docs/zoo.md): a tiny LlamaForCausalLM trained locally on synthetic text so "
        "that merging and evaluation show real effects on CPU. Not a general-purpose model.", "",
        f"**Trained on.** {m.summary}", "",
        f"**What moved.** {_TRAINS[m.trains]}.", "",
        f"**How long.** {s.steps} steps of batch {s.batch} (AdamW, peak lr {s.lr}, warmup {s.warmup}, cosine to "
        f"10%), {trained.get('seconds', '?')} s on CPU; loss {trained.get('first_loss', '?')} -> "
        f"{trained.get('last_loss', '?')}.", "",
        f"**Shape.** {SHAPE.layers} layers, hidden {SHAPE.hidden}, {SHAPE.heads} heads (head_dim {SHAPE.head_dim}), "
        f"MLP {SHAPE.intermediate}, tied embeddings, {trained.get('n_params', '?')} parameters, float32 "
        "safetensors. Tokenizer: the zoo's byte-level BPE (every zoo word one token).", "",
        f"**Recipe hash.** `{recipe.get('hash', '?')}` (seed {recipe.get('seed')}; full recipe in zoo_recipe.json).",
        "",
    ]
    return "\n".join(lines)
