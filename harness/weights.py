"""What a model folder's weight files are and whether their values are finite: read as data, never unpickled.

    weight_files(folder)    -> the safetensors files, else the pickle checkpoints (.bin/.pt/...), else []
    nonfinite(tensors)      -> (name, count) of the first tensor holding NaN/inf, or None
    folder_nonfinite(folder) -> the same over a folder's safetensors, one tensor in memory at a time
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
ENSEMBLE_KEY = "harness_ensemble"  # config.json of an ensemble folder lists its members' model ids under this key
ENSEMBLE_PATHS = "ensemble_members.json"  # and where they are: no model file, so no part of the ensemble's id


def ensemble_members(folder: Path) -> list[tuple[Path, str]] | None:
    """An ensemble folder's members as (folder, model id), in order; None for a folder that is no ensemble. Their
    paths are in ENSEMBLE_PATHS (a folder made before it lists them in config.json)."""
    import json

    try:
        listed = json.loads((folder / "config.json").read_text()).get(ENSEMBLE_KEY) or {}
        members = listed.get("members") if isinstance(listed, dict) else None
        if not members:
            return None
        there = folder / ENSEMBLE_PATHS
        paths = json.loads(there.read_text()) if there.is_file() else [m["path"] for m in members]
        return [(Path(p), m["model_id"]) for p, m in zip(paths, members, strict=True)]
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None


def weight_folders(folder: Path) -> list[Path]:
    """The folders that hold a model's weights: the folder itself, or an ensemble folder's members."""
    members = ensemble_members(folder)
    return [p for p, _ in members] if members else [folder]


def pickle_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in PICKLE_SUFFIXES)


def safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def require_safe_weights(folder: Path, label: str, allow_pickle: bool) -> None:
    """The one pickle policy (merge and eval): a folder's weights are safetensors, or pickle checkpoints only with
    --allow-pickle (unpickling runs whatever code the file names). HarnessError otherwise."""
    from harness.errors import HarnessError

    members = weight_folders(folder)
    if members != [folder]:  # an ensemble: each member is held to the policy
        for member in members:
            require_safe_weights(member, f"{label} member {member.name}", allow_pickle)
        return
    if safetensors_files(folder):
        return
    pickles = pickle_files(folder)
    if not pickles:
        raise HarnessError(f"model {label} ({folder}) has no weights (*.safetensors)",
                           "point at a complete model folder")
    if not allow_pickle:
        raise HarnessError(f"model {label} has only pickle weights ({pickles[0].name}); pickles can run code "
                           "when loaded", "convert it to safetensors, or pass --allow-pickle if you trust it")


def folder_tensors(folder: Path) -> Iterator[tuple[str, Any]]:
    """(name, tensor) for every tensor of a safetensors folder, one at a time."""
    from safetensors import safe_open

    for f in safetensors_files(folder):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                yield k, st.get_tensor(k)


def nonfinite(tensors: Iterable[tuple[str, Any]]) -> tuple[str, int] | None:
    import torch

    for name, t in tensors:
        if t.is_floating_point():
            # NaN and inf survive a sum, so a finite sum clears the tensor; only a non-finite sum (a bad value, or
            # finite values overflowing the dtype) is looked at element by element. The sum stays in the tensor's
            # own dtype: sum(dtype=float32) first copies a bfloat16 tensor to float32 (2.3 CPU s for a 1 GB merge
            # here, against 0.4 s)
            if t.numel() and bool(torch.isfinite(t.sum())):
                continue
            ok = torch.isfinite(t)
            if not bool(ok.all()):
                return name, int((~ok).sum())
    return None


def folder_nonfinite(folder: Path) -> tuple[str, int] | None:
    """The first non-finite tensor of the model's weights (an ensemble's: each member's, named by member)."""
    for member in weight_folders(folder):
        bad = nonfinite(folder_tensors(member))
        if bad is not None:
            return (bad[0] if member == folder else f"{member.name}/{bad[0]}"), bad[1]
    return None
