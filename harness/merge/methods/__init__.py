"""harness's own merge methods, plugged into mergekit's registry (one small module per method).

`register_methods()` adds them once per process; `method_names()` lists everything mergekit can run.
"""

from __future__ import annotations

# name -> "module:attribute" of a mergekit MergeMethod; imported lazily (mergekit imports torch).
HARNESS_METHODS = {
    "fisher": "harness.merge.methods.fisher_merge:fisher_merge",
}


def register_methods() -> None:
    """Register harness's methods in mergekit's registry (idempotent; loud if another one took a name)."""
    import importlib

    from mergekit import merge_methods

    have = {m.spec.name: m for m in merge_methods.registered_methods()}
    for name, target in HARNESS_METHODS.items():
        module, attr = target.split(":")
        method = getattr(importlib.import_module(module), attr)
        if name in have:
            if have[name] is not method:
                raise RuntimeError(f"merge method {name!r} is already registered by someone else")
            continue
        merge_methods.register(method)


def method_names() -> list[str]:
    from mergekit import merge_methods

    register_methods()
    return [m.spec.name for m in merge_methods.registered_methods()]
