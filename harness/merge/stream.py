"""Merging in bounded memory: what `harness merge` holds while mergekit's run_merge runs.

mergekit's executor already merges one tensor at a time (its schedule groups each tensor's loads, merge and save
together and drops values after their last use). Two things kept a whole model resident anyway:

- the inputs: each model's safetensors file stays memory-mapped for the whole merge, so every page read stays in
  the process's resident set (3 x 1 GB inputs -> 3 GB resident by the end);
- the output: mergekit's TensorWriter holds the current shard in memory until it is full (5 GB by default: the whole
  output of most models).

`bounded_loaders` gives each input a loader that maps its file only while one tensor is read (mergekit's own
LazyTensorLoader, flushed after each read), and `SHARD_BYTES` caps the output shard, so the peak is a few tensors
plus one shard whatever the model size. The output is byte for byte what `mergekit-yaml --out-shard-size
SHARD_BYTES` writes (tests/test_merge_stream.py compares the files).

`finite_writer` checks each output tensor for NaN/inf as mergekit hands it to its writer (in memory already),
instead of reading the written folder back afterwards. `reused_memory` lets malloc reuse the memory of freed
tensors instead of having the kernel map and zero fresh pages for each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SHARD_BYTES = 256_000_000  # bytes per output shard; mergekit-yaml --out-shard-size 256M writes the same files
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc mallopt parameters (malloc.h)
DEFAULT_MMAP_MAX = 65536  # glibc's default
# Any mallopt call turns glibc's sliding mmap threshold off for good. After a merge it would have slid to its 64-bit
# ceiling (32 MiB; trim at twice that) on the first large tensor freed, so that is where it is left.
SLID_MMAP_THRESHOLD = 32 * 1024 * 1024


def releasing_loader(loader: Any) -> Any:
    """A mergekit LazyTensorLoader whose shard is unmapped after every read (the tensor itself is a copy)."""
    from mergekit.io.lazy_tensor_loader import LazyTensorLoader

    class ReleasingLoader(LazyTensorLoader):
        def get_tensor(self, key: str, device: str = "cpu", aliases: Any = None,
                       raise_on_missing: bool = True) -> Any:
            try:
                return super().get_tensor(key, device=device, aliases=aliases, raise_on_missing=raise_on_missing)
            finally:
                self.flush()

    return ReleasingLoader(loader.index, lazy_unpickle=loader.lazy_unpickle)


@contextmanager
def bounded_loaders(config: Any, options: Any) -> Iterator[None]:
    """Put releasing loaders for the recipe's plain (non-LoRA) models into mergekit's LoaderCache for the merge,
    and put back what was there afterwards (the in-memory merger shares that cache)."""
    from mergekit.io.tasks import LoaderCache

    cache = LoaderCache()
    cache.setup(options=options)
    before = {}
    for model in config.referenced_models():
        if model.lora:
            continue
        before[model] = cache.loaders.get(model)
        plain = model.lazy_loader(cache_dir=options.transformers_cache, lazy_unpickle=options.lazy_unpickle)
        cache.loaders[model] = releasing_loader(plain)
    try:
        yield
    finally:
        for model, loader in before.items():
            if loader is None:
                cache.loaders.pop(model, None)
            else:
                cache.loaders[model] = loader


@contextmanager
def finite_writer(where: str) -> Iterator[None]:
    """Make mergekit's writer refuse a tensor holding NaN/inf (HarnessError naming it, raised out of run_merge
    before the shard is written), for the merges that run inside the block."""
    import mergekit.io.tasks as tasks

    from harness.merge.checks import check_finite

    plain = tasks.TensorWriter

    class FiniteWriter(plain):  # type: ignore[misc, valid-type]
        def save_tensor(self, name: str, tensor: Any, clone: bool = False) -> None:
            check_finite([(name, tensor)], where)
            super().save_tensor(name, tensor, clone=clone)

    tasks.TensorWriter = FiniteWriter
    try:
        yield
    finally:
        tasks.TensorWriter = plain


@contextmanager
def reused_memory() -> Iterator[None]:
    """Inside the block glibc's malloc serves every allocation from its heap and keeps freed memory there, so each
    tensor reuses the pages of the one freed before it. By default every tensor over 32 MiB is a fresh mmap whose
    pages the kernel faults in and zeroes: a 3 x 1 GB merge took 1.2 million page faults here, 0.27 million with
    reuse (2.5 s less system time, same peak RSS). Afterwards malloc is set as glibc's own sliding threshold
    leaves it after freeing large tensors, and the freed memory is handed back to the system. Nothing changes
    where malloc is not glibc's."""
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        yield
        return
    mallopt(M_MMAP_MAX, 0)
    mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        mallopt(M_MMAP_THRESHOLD, SLID_MMAP_THRESHOLD)
        mallopt(M_TRIM_THRESHOLD, 2 * SLID_MMAP_THRESHOLD)
        malloc_trim(0)
