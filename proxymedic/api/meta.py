"""Kubernetes building blocks the kinds share: object metadata, label selectors, conditions."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from proxymedic.api.types import ApiModel, ObjectName, cel

GROUP = "proxymedic.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]


class ObjectMeta(ApiModel):
    """The part of metadata the models read; everything else the API server adds is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: ObjectName
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class SelectorOperator(enum.StrEnum):
    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


class LabelSelectorRequirement(ApiModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : size(self.values) == 0",
                    "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                    ".values",
                )
            ]
        }
    )

    key: LabelKey
    operator: SelectorOperator
    values: Annotated[list[LabelValue], Field(max_length=64)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> LabelSelectorRequirement:
        needs_values = self.operator in (SelectorOperator.IN, SelectorOperator.NOT_IN)
        if needs_values and not self.values:
            raise ValueError(f"values must be non-empty for operator {self.operator}")
        if not needs_values and self.values:
            raise ValueError(f"values must be empty for operator {self.operator}")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        match self.operator:
            case SelectorOperator.IN:
                return labels.get(self.key) in self.values
            case SelectorOperator.NOT_IN:
                return labels.get(self.key) not in self.values
            case SelectorOperator.EXISTS:
                return self.key in labels
            case SelectorOperator.DOES_NOT_EXIST:
                return self.key not in labels


class LabelSelector(ApiModel):
    """A Kubernetes label selector; an empty selector selects everything."""

    match_labels: dict[str, LabelValue] = Field(default_factory=dict)
    match_expressions: Annotated[list[LabelSelectorRequirement], Field(max_length=32)] = Field(
        default_factory=list
    )

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(key) != value for key, value in self.match_labels.items()):
            return False
        return all(requirement.matches(labels) for requirement in self.match_expressions)

    def to_query(self) -> str:
        """The ``labelSelector`` query parameter for list and watch requests."""
        terms = [f"{key}={value}" for key, value in sorted(self.match_labels.items())]
        for req in self.match_expressions:
            match req.operator:
                case SelectorOperator.IN | SelectorOperator.NOT_IN:
                    word = "in" if req.operator is SelectorOperator.IN else "notin"
                    terms.append(f"{req.key} {word} ({','.join(req.values)})")
                case SelectorOperator.EXISTS:
                    terms.append(req.key)
                case SelectorOperator.DOES_NOT_EXIST:
                    terms.append(f"!{req.key}")
        return ",".join(terms)


CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A status condition with the fields of metav1.Condition."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    status: ConditionStatus
    reason: Annotated[
        str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ]
    message: Annotated[str, Field(max_length=32768)] = ""
    last_transition_time: datetime
    observed_generation: Annotated[int, Field(ge=0)] | None = None


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Replace the condition of the same type, keeping its transition time if the status is unchanged."""
    result: list[Condition] = []
    for old in conditions:
        if old.type != new.type:
            result.append(old)
        elif old.status == new.status:
            new = new.model_copy(update={"last_transition_time": old.last_transition_time})
    result.append(new)
    return sorted(result, key=lambda condition: condition.type)


def resource_dict(model: ApiModel) -> dict[str, Any]:
    """A model as the API server stores it: camelCase keys, no unset optional fields."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
