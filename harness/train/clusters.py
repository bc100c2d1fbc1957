"""Splitting instruction data into K clusters: k-means on embeddings (the paper's), or at random (the control).

    vectors = embed(model_dir, texts)              # a model's mean (or CLS) last hidden state, one row a text
    labels = kmeans_labels(vectors, k, seed)       # cluster id per example
    labels = random_labels(sizes(labels, k), seed) # the control: k-means' sizes, random membership
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    import numpy as np


def check_k(k: int, n: int) -> None:
    if k < 1 or k > n:
        raise HarnessError(f"K={k} clusters for {n} examples", f"set k between 1 and {n} (the number of examples)")


def pooling(model_dir: Path) -> str:
    """"cls" or "mean": a sentence-transformers folder says which in 1_Pooling/config.json; anything else is mean."""
    import json

    try:
        config = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError):
        return "mean"
    return "cls" if config.get("pooling_mode_cls_token") and not config.get("pooling_mode_mean_tokens") else "mean"


def embed(model_dir: Path, texts: list[str], batch: int = 64) -> np.ndarray:
    """The last hidden state of any transformers model (a causal LM such as the base, or a sentence-embedding
    encoder), pooled over each text's tokens (padding masked out) or at its first token; float32, a row a text.
    A causal LM's last hidden state is after its final norm, as in its hidden_states[-1]."""
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    cls, special = pooling(model_dir) == "cls", model.config.is_encoder_decoder or not _is_causal(model)
    rows = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], return_tensors="pt", padding=True, add_special_tokens=special)
            hidden = model(**enc).last_hidden_state
            if cls:
                rows.append(hidden[:, 0])
                continue
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            rows.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))
    return torch.cat(rows).numpy().astype(np.float32)


def _is_causal(model: object) -> bool:
    archs = getattr(getattr(model, "config", None), "architectures", None) or []
    return any(a.endswith("ForCausalLM") for a in archs)


def kmeans_labels(vectors: np.ndarray, k: int, seed: int) -> list[int]:
    """scikit-learn k-means (k-means++, 10 starts) on L2-normalised vectors; cluster ids ordered by size."""
    import numpy as np
    from sklearn.cluster import KMeans

    check_k(k, len(vectors))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
    raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit)
    order = sorted(range(k), key=lambda c: (-int((raw == c).sum()), c))
    rename = {old: new for new, old in enumerate(order)}
    return [rename[int(c)] for c in raw]


def sizes(labels: list[int], k: int) -> list[int]:
    """How many examples each of the k clusters holds, by cluster id."""
    out = [0] * k
    for c in labels:
        out[c] += 1
    return out


def random_labels(cluster_sizes: list[int], seed: int) -> list[int]:
    """The control: a seeded random permutation of the examples cut at `cluster_sizes`, so cluster c holds exactly
    cluster_sizes[c] examples (k-means' own, so the control differs from k-means in membership only). Its generator
    is not `random.Random(seed)`: the study shuffles its data with that one, and the same permutation would tie the
    clusters to the file's line order (an even split drawn so put line i in cluster i % k)."""
    order = list(range(sum(cluster_sizes)))
    random.Random(f"random-clusters-{seed}").shuffle(order)
    labels = [0] * len(order)
    start = 0
    for c, size in enumerate(cluster_sizes):
        for i in order[start:start + size]:
            labels[i] = c
        start += size
    return labels


def groups(labels: list[int], k: int) -> list[list[int]]:
    """Example indices per cluster; an empty cluster is an error (k-means can leave one on duplicates)."""
    out: list[list[int]] = [[] for _ in range(k)]
    for i, c in enumerate(labels):
        out[c].append(i)
    if any(not g for g in out):
        raise HarnessError(f"{sum(not g for g in out)} of {k} clusters are empty", "lower k or add examples")
    return out
