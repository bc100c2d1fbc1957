"""Typed YAML configs (evolve, dtm): safe-loaded, validated once by a pydantic model, and the first problem turned
into one line naming the field and where the docs show an example."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from harness.errors import HarnessError

Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], data: Any, source: str, what: str, doc: str) -> Model:
    """`data` (a safe-loaded YAML document) as `model`; HarnessError naming the first bad field."""
    if not isinstance(data, dict):
        raise HarnessError(f"{source} must be a YAML mapping", f"see {doc} for an example")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or what
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise HarnessError(f"{source}: field {where}: {msg}", f"fix the {what} (see {doc})") from None


def load_yaml_config(path: str | Path, model: type[Model], kind: str, doc: str) -> tuple[Model, Path]:
    """(config, the folder its relative references start from) of a YAML file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise HarnessError(f"no {kind} config at {p}", "check the path")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise HarnessError(f"{p} is not valid YAML ({str(exc).splitlines()[0]})", "fix the YAML syntax") from None
    return validated(model, data, str(p), "config", doc), p.resolve().parent
