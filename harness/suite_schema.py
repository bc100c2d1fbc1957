"""The `suite.yaml` schema: one frozen, validated object; errors name the file and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import HarnessError

HUB_SPLIT = "hub"  # the split a `--hub` run (the suite's hub_tasks, lm-eval's own) is stored under
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(:[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


class AggregateSpec(BaseModel):
    """How a suite's tasks combine into its score, as lm-eval's group `aggregate_metric_list` says it: one metric
    ("metric" or "metric,filter" as lm-eval reports it), weighted by each task's size or not."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str | None = None  # None: each task's primary metric (harness/store/frames.py PRIMARY_METRICS)
    weight_by_size: bool = True
    # split -> the metric of that split's tasks where a split's tasks report another one (mgsm: lm-eval's
    # variants filter differently from harness's own; "hub": the hub_tasks' own, where they report another);
    # the other splits use `metric`
    split_metrics: dict[str, str] = Field(default_factory=dict)
TwinRelation = Literal["aligned", "derived", "independent"]


class TwinSpec(BaseModel):
    """How a twin's items relate to the public items (docs/overfitting.md "Twin maps").

    `aligned`: the same items with a changed surface, one twin item per public item (the map is a bijection);
    `derived`: each twin item names the public item it was made from (several may share one);
    `independent`: different items, never paired. `map` is a file of the public suite (built by
    scripts/build_twin_maps.py); `tasks` restricts the twin to some of its split's tasks (one perturbation type)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str
    relation: TwinRelation = "independent"
    map: str | None = None
    tasks: tuple[str, ...] = ()

    @field_validator("ref")
    @classmethod
    def _ref(cls, v: str) -> str:
        if not REF.match(v):
            raise ValueError(f"{v!r} is not 'suite' or 'suite:split'")
        return v

    @model_validator(mode="after")
    def _mapped(self) -> TwinSpec:
        if self.relation != "independent" and not self.map:
            raise ValueError(f"an {self.relation} twin needs a map (twins/<kind>.json, scripts/build_twin_maps.py)")
        if self.relation == "independent" and self.map:
            raise ValueError("an independent twin is never paired: drop its map or name its relation")
        return self

    @classmethod
    def of(cls, value: str | TwinSpec | dict[str, Any]) -> TwinSpec:
        """A twin from suite.yaml's short form ('suite:split', independent) or its mapping form."""
        if isinstance(value, TwinSpec):
            return value
        return cls(ref=value) if isinstance(value, str) else cls.model_validate(value)


class UserDataSpec(BaseModel):
    """A data file a suite's task YAMLs read but the suite does not ship (its license or size): `what` it is,
    where to `get` it, and the environment variable `env` that may hold its path (harness/suite_data.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    what: str
    get: str


class SuiteSpec(BaseModel):
    """What a suite.yaml holds (see docs/suites.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    kind: Literal["lm-eval", "judge"]
    description: str = ""
    default_split: str
    splits: dict[str, list[str]] = Field(min_length=1)
    tiers: dict[str, int | None] = Field(default_factory=lambda: {"smoke": 20, "quick": 100, "full": None})
    twins: dict[str, TwinSpec] = Field(default_factory=dict)
    hub_tasks: list[str] = Field(default_factory=list)
    aggregate: AggregateSpec = Field(default_factory=AggregateSpec)
    user_data: dict[str, UserDataSpec] = Field(default_factory=dict)  # data file name -> how the user supplies it
    # split -> the split whose questions it asks, task for task (the i-th task of each, in the order listed) and
    # document for document (mgsm: every split reads the same 11 files). Only the gate's and the fitness stderr's
    # question naming reads it (harness/seed_questions.py); it is no twin: nothing is compared across it
    same_questions: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME.match(v) or ":" in v:
            raise ValueError("use letters, digits, '_', '-' or '.' (no ':')")
        return v

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v).strip() == "":
            raise ValueError('a non-empty string such as "1"')
        return str(v)

    @field_validator("splits")
    @classmethod
    def _splits(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for split, tasks in v.items():
            if not tasks:
                raise ValueError(f"split {split!r} lists no tasks")
            if len(set(tasks)) != len(tasks):
                raise ValueError(f"split {split!r} lists a task twice")
        return v

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: dict[str, int | None]) -> dict[str, int | None]:
        for tier, limit in v.items():
            if limit is not None and limit < 1:
                raise ValueError(f"tier {tier!r}: a limit is a positive integer or null")
        return v

    @field_validator("twins", mode="before")
    @classmethod
    def _twins(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out = {}
        for kind, ref in v.items():
            if isinstance(ref, str) and not REF.match(ref):
                raise ValueError(f"twin {kind!r}: {ref!r} is not 'suite' or 'suite:split'")
            out[kind] = TwinSpec(ref=ref) if isinstance(ref, str) else ref
        return out

    @model_validator(mode="after")
    def _default_split(self) -> SuiteSpec:
        if self.default_split not in self.splits:
            raise ValueError(f"default_split {self.default_split!r} is not one of the splits: {', '.join(self.splits)}")
        named = set(self.splits) | ({HUB_SPLIT} if self.hub_tasks else set())
        unknown = sorted(set(self.aggregate.split_metrics) - named)
        if unknown:
            why = f" (nor {HUB_SPLIT!r}: the suite names no hub_tasks)" if unknown[0] == HUB_SPLIT else ""
            raise ValueError(f"aggregate.split_metrics names {unknown[0]!r}, which is not one of the splits{why}")
        return self

    @model_validator(mode="after")
    def _same_questions(self) -> SuiteSpec:
        for split, asked in self.same_questions.items():
            unknown = [s for s in (split, asked) if s not in self.splits]
            if unknown:
                raise ValueError(f"same_questions names {unknown[0]!r}, which is not one of the splits")
            if asked == split or asked in self.same_questions:
                raise ValueError(f"same_questions: {split!r} names {asked!r}, which must be another split that "
                                 "names none itself")
            if len(self.splits[split]) != len(self.splits[asked]):
                raise ValueError(f"same_questions: split {split!r} has {len(self.splits[split])} tasks, "
                                 f"{asked!r} {len(self.splits[asked])} (its tasks ask theirs one for one)")
        return self


def parse_suite_yaml(raw: Any, path: Path) -> SuiteSpec:
    """Validate a safe-loaded suite.yaml; the first problem becomes a one-line HarnessError naming the field."""
    if not isinstance(raw, dict):
        raise HarnessError(f"{path}: suite.yaml must be a mapping of fields", "see docs/suites.md for the format")
    try:
        return SuiteSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "suite.yaml"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        raise HarnessError(f"{path}: field {where!r}: {msg}", "see docs/suites.md for the format") from None
