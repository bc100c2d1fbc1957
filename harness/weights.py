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
