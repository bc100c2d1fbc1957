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


def pickle_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in PICKLE_SUFFIXES)


def safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def require_safe_weights(folder: Path, label: str, allow_pickle: bool) -> None:
    """The one pickle policy (merge and eval): a folder's weights are safetensors, or pickle checkpoints only with
    --allow-pickle (unpickling runs whatever code the file names). HarnessError otherwise."""
    from harness.errors import HarnessError

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
            ok = torch.isfinite(t)
            if not bool(ok.all()):
                return name, int((~ok).sum())
    return None


def folder_nonfinite(folder: Path) -> tuple[str, int] | None:
    return nonfinite(folder_tensors(folder))
