"""mergekit's MergeConfiguration with its models in recipe order.

mergekit's `referenced_models()` is `list(set(...))`: its order follows the ModelReferences' hashes, which change
from process to process (PYTHONHASHSEED). Without `base_model`, mergekit takes the output's config.json, the
tagalong files (generation_config.json), the tokenizer and the chat template from its first entry, so one recipe
(one id) gave another donor in another process. This subclass returns mergekit's own list, sorted by where each
model first appears in the recipe (base_model, models, slices' sources, modules), so the donor is the first model
the recipe names. A model the walk does not find (a reference kind mergekit adds later) goes last, by its text.
"""

from __future__ import annotations

from typing import Any

from mergekit.common import ModelReference
from mergekit.config import MergeConfiguration


class OrderedMergeConfiguration(MergeConfiguration):
    def referenced_models(self) -> list[ModelReference]:
        order = {m: i for i, m in enumerate(dict.fromkeys(_walk(self)))}
        return sorted(super().referenced_models(), key=lambda m: (order.get(m, len(order)), str(m)))


def _walk(config: MergeConfiguration) -> list[ModelReference]:
    """The models in the order the recipe names them (repeats kept: the caller keeps the first)."""
    found: list[ModelReference] = [config.base_model] if config.base_model else []

    def add(models: Any, slices: Any) -> None:
        found.extend(m.model for m in models or [])
        found.extend(src.model for s in slices or [] for src in s.sources)

    add(config.models, config.slices)
    for module in (config.modules or {}).values():
        add(module.models, module.slices)
    return found
