"""harness: merge LLMs on demand, evaluate them fast, and keep every score with its merge lineage.

Importing this package is cheap: it must not import torch, transformers or vllm.
"""

__version__ = "0.1.0"  # the one home of the version: pyproject.toml reads it (dynamic)
