"""What a merged folder says about itself: a Hub-style model card, the runnable mergekit config, and a JSON record of
the merge (id, parents, seed, versions, the sizes of the files that define the model). None of these files enter the
model's content hash."""

from __future__ import annotations

import json
from pathlib import Path

from harness import __version__
from harness.merge.resolve import MergePlan

CARD = """---
{front}---
# {title}

Merged by harness {harness} with [mergekit](https://github.com/arcee-ai/mergekit) {mergekit},
method `{method}`, seed {seed}.

- model id: `{model_id}`
- recipe id: `{recipe_id}`

## Parents

| role | model | id | weight |
|---|---|---|---|
{rows}

## Recipe

```yaml
{recipe}
```

## Normalised recipe (what the id hashes; models as parent ids)

```yaml
{normalised}
```
"""


def card_text(plan: MergePlan, name: str | None = None) -> str:
    import yaml

    front = yaml.safe_dump(
        {"base_model": [p.name or p.path for p in plan.parents], "tags": ["merge", "mergekit", "harness"],
         "library_name": "transformers"},
        sort_keys=False,
    )
    rows = "\n".join(
        f"| {p.role} | {p.name or p.path} | `{p.model_id[:12]}` | {'' if p.weight is None else p.weight} |"
        for p in plan.parents
    )
    return CARD.format(
        front=front, title=name or plan.model_id[:12], harness=__version__, mergekit=plan.mergekit_version,
        method=plan.method, seed=plan.seed, model_id=plan.model_id, recipe_id=plan.recipe_id, rows=rows,
        recipe=plan.recipe.text.strip(), normalised=plan.normalised_yaml().strip(),
    )


def merge_record(plan: MergePlan, folder: Path) -> dict:
    from harness.identity import files_sizes

    return {
        "model_id": plan.model_id, "recipe_id": plan.recipe_id, "method": plan.method, "seed": plan.seed,
        "mergekit": plan.mergekit_version, "harness": __version__,
        "parents": [{"model_id": p.model_id, "path": p.path, "role": p.role, "name": p.name, "weight": p.weight}
                    for p in plan.parents],
        "files": files_sizes(folder),
    }


def write_card(folder: Path, plan: MergePlan, name: str | None = None) -> None:
    import yaml

    (folder / "README.md").write_text(card_text(plan, name), encoding="utf-8")
    (folder / "mergekit_config.yml").write_text(yaml.safe_dump(plan.config_data, sort_keys=False), encoding="utf-8")
    (folder / "harness_merge.json").write_text(json.dumps(merge_record(plan, folder), indent=2), encoding="utf-8")
