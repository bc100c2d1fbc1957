"""Seeding a merge exactly as mergekit does (transformers' set_seed), without leaking the seed to the caller."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the body with python, numpy and torch seeded like `mergekit-yaml --random-seed`; restore them after."""
    import numpy as np
    import torch
    import transformers

    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            transformers.trainer_utils.set_seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
