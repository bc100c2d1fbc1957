"""Fisher-weighted averaging (Matena & Raffel, NeurIPS 2022), as a mergekit merge method.

    theta = sum_i w_i (F_i + eps) theta_i / sum_i w_i (F_i + eps)

F_i is model i's diagonal Fisher for this tensor, read from the safetensors file named by its `fisher`
parameter (written by harness.merge.fisher). With all F_i equal this is the weighted average of `linear`.
Recipes with `models:` only: the tensor's output name is its name in every source.
"""

from __future__ import annotations

import torch
from mergekit.merge_methods import InputContract, PerInput, TensorGroup, merge_method


def read_fisher(path: str, name: str | None, device: torch.device) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(path, framework="pt", device=str(device)) as f:
        if name not in f.keys():
            raise ValueError(f"Fisher file {path} has no tensor {name!r}: estimate it for this model again")
        return f.get_tensor(name)


@merge_method(
    name="fisher",
    pretty_name="Fisher-weighted averaging",
    reference_url="https://arxiv.org/abs/2111.09832",
    contract=InputContract(min_inputs=1),
)
def fisher_merge(
    group: TensorGroup,
    fisher: PerInput[str],
    weight: PerInput[float] = 1.0,
    epsilon: float = 1e-8,
) -> torch.Tensor:
    first = group.entries[0].tensor
    num = torch.zeros_like(first, dtype=torch.float32)
    den = torch.zeros_like(first, dtype=torch.float32)
    for entry in group.entries:
        f = read_fisher(fisher[entry.id], group.metadata.name, first.device).to(torch.float32)
        if f.shape != first.shape:
            raise ValueError(f"Fisher for {group.metadata.name} has shape {tuple(f.shape)}, "
                             f"the tensor {tuple(first.shape)}")
        f = weight[entry.id] * (f + epsilon)
        num.add_(f * entry.tensor.to(torch.float32))
        den.add_(f)
    return (num / den).to(first.dtype)
