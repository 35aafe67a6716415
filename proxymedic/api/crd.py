"""Generate the CustomResourceDefinitions from the models: the models are the single source of truth.

pydantic's JSON Schema is turned into a structural OpenAPI v3 schema as the API server
wants it: references inlined, titles and ``additionalProperties: false`` dropped (the
server prunes unknown fields instead), optional fields unwrapped from ``anyOf [X, null]``,
and nested objects defaulted to ``{}`` so their own defaults apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from proxymedic.api.health import NodeProxyHealth
from proxymedic.api.intent import RemediationIntent
from proxymedic.api.meta import GROUP, VERSION
from proxymedic.api.policy import ProxyHealthPolicy
from proxymedic.api.types import ApiModel, format_duration


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""

    def to_crd(self) -> dict[str, Any]:
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            column["priority"] = self.priority
        if self.description:
            column["description"] = self.description
        return column


@dataclass(frozen=True)
class KindInfo:
    model: type[ApiModel]
    plural: str
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]

    @property
    def kind(self) -> str:
        return str(self.model.kind_name)  # type: ignore[attr-defined]

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"

    @property
    def file_name(self) -> str:
        return f"{GROUP}_{self.plural}.yaml"


_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")

KINDS: tuple[KindInfo, ...] = (
    KindInfo(
        model=ProxyHealthPolicy,
        plural="proxyhealthpolicies",
        short_names=("php", "phpolicy"),
        columns=(
            PrinterColumn("Accepted", '.status.conditions[?(@.type=="Accepted")].status'),
            PrinterColumn("DryRun", ".spec.guardrails.dryRun", "boolean"),
            PrinterColumn("Paused", ".spec.guardrails.paused", "boolean"),
            PrinterColumn("Services", ".status.selectedServices", "integer"),
            PrinterColumn("Nodes", ".status.selectedNodes", "integer"),
            PrinterColumn("Intents", ".status.counters.intentsIssued", "integer"),
            PrinterColumn("Held", ".status.counters.actionsHeld", "integer"),
            PrinterColumn("Last", ".status.lastRemediation.time", "date"),
            _AGE,
        ),
    ),
    KindInfo(
        model=RemediationIntent,
        plural="remediationintents",
        short_names=("ri", "rintent"),
        columns=(
            PrinterColumn("Action", ".spec.action"),
            PrinterColumn("Namespace", ".spec.service.namespace"),
            PrinterColumn("Service", ".spec.service.name"),
            PrinterColumn("Dead", ".spec.deadBackends"),
            PrinterColumn("DryRun", ".spec.dryRun", "boolean"),
            PrinterColumn("Nodes", ".status.targetNodes", "integer"),
            PrinterColumn("Applied", ".status.outcomes.applied", "integer"),
            PrinterColumn("Clean", ".status.outcomes.alreadyClean", "integer"),
            PrinterColumn("Failed", ".status.outcomes.failed", "integer"),
            PrinterColumn("Policy", ".spec.policyName", priority=1),
            PrinterColumn("Expires", ".spec.expiresAt", "date", priority=1),
            _AGE,
        ),
    ),
    KindInfo(
        model=NodeProxyHealth,
        plural="nodeproxyhealths",
        short_names=("nph",),
        columns=(
            PrinterColumn("Mode", ".status.proxyMode"),
            PrinterColumn("Sync", ".status.kubeProxy.freshness"),
            PrinterColumn("Healthz", ".status.kubeProxy.healthz"),
            PrinterColumn("Findings", ".status.findingCount", "integer"),
            PrinterColumn("Conntrack", ".status.conntrack.count", "integer"),
            PrinterColumn("UDPTimeout", ".status.ipvs.udpTimeoutSeconds", "integer", priority=1),
            PrinterColumn("Seen", ".status.observedAt", "date"),
            _AGE,
        ),
    ),
)

_DROPPED_KEYS = {"title"}


class _CRDJsonSchema(GenerateJsonSchema):
    """Emit defaults of ``default_factory`` fields too, so the API server applies them.

    A nested object whose factory builds the model's own defaults becomes ``{}``: the server
    then applies the nested fields' defaults itself, and the CRD stays readable. An object that
    carries CEL rules gets its defaults written out instead: kube-apiserver checks a default
    against its node's rules as written, without applying the nested defaults first, so ``{}``
    fails any rule that reads a field ("no such key") and the whole CRD is rejected.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            if isinstance(value, ApiModel) and value == type(value)():
                value = _written_out(value) if _has_rules(type(value)) else {}
            schema = {key: val for key, val in schema.items() if key != "default_factory"}  # type: ignore[assignment]
            schema["default"] = value
        return super().default_schema(schema)

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def _has_rules(model: type[ApiModel]) -> bool:
    extra = model.model_config.get("json_schema_extra")
    return isinstance(extra, dict) and bool(extra.get("x-kubernetes-validations"))


def _written_out(value: ApiModel) -> dict[str, Any]:
    """Every field's default, as the API spells it: what the server would fill in itself."""
    dumped = value.model_dump(by_alias=True, exclude_none=True)
    return {
        key: format_duration(item) if isinstance(item, timedelta) else item for key, item in dumped.items()
    }


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve $ref against $defs recursively; sibling keys of a $ref override the target's."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = dict(defs[node["$ref"].rsplit("/", 1)[-1]])
        target.update({key: value for key, value in node.items() if key != "$ref"})
        return _inline(target, defs)
    return {key: _inline(value, defs) for key, value in node.items() if key not in _DROPPED_KEYS}


def _structural(node: Any) -> Any:
    """Rewrite JSON-Schema idioms that a structural CRD schema does not allow."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _structural(value) for key, value in node.items()}
    any_of = node.get("anyOf")
    if isinstance(any_of, list) and not node.get("x-kubernetes-int-or-string"):
        branches = [branch for branch in any_of if branch != {"type": "null"}]
        if len(branches) == 1 and len(branches) < len(any_of):
            # Optional[X]: an absent field is how the API says "not set".
            del node["anyOf"]
            merged = dict(branches[0])
            merged.update(node)
            node = merged
            if node.get("default", ...) is None:
                del node["default"]
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def openapi_schema(info: KindInfo) -> dict[str, Any]:
    """The openAPIV3Schema of one kind, generated from its model."""
    raw = info.model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CRDJsonSchema)
    schema: dict[str, Any] = _structural(_inline(raw, raw.pop("$defs", {})))
    schema.pop("description", None)
    properties = schema["properties"]
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = {"type": "object"}
    schema["required"] = [name for name in schema.get("required", []) if name not in ("metadata",)]
    if not schema["required"]:
        del schema["required"]
    properties.get("status", {}).pop("default", None)
    return schema


def build_crd(info: KindInfo) -> dict[str, Any]:
    singular = info.kind.lower()
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": info.crd_name,
            "labels": {"app.kubernetes.io/name": "proxymedic", "app.kubernetes.io/part-of": "proxymedic"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": singular,
                "shortNames": list(info.short_names),
                "categories": ["proxymedic"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [column.to_crd() for column in info.columns],
                    "schema": {"openAPIV3Schema": openapi_schema(info)},
                }
            ],
        },
    }


HEADER = "# Generated by `proxymedic crds` from proxymedic/api: do not edit by hand.\n"


def render_crd(info: KindInfo) -> str:
    return HEADER + yaml.safe_dump(build_crd(info), sort_keys=False, width=100, allow_unicode=True)


def render_all() -> dict[str, str]:
    """File name → YAML text of every CRD."""
    return {info.file_name: render_crd(info) for info in KINDS}
