"""A small custom resource for emulator tests: every schema feature the emulator implements."""

from __future__ import annotations

from typing import Any

GROUP = "test.proxymedic.io"
VERSION = "v1"
PLURAL = "probes"
KIND = "Probe"
API_VERSION = f"{GROUP}/{VERSION}"
NODES_MESSAGE = "'bad node name among ' + string(size(self)) + ' nodes'"


def probe_crd(*, scope: str = "Cluster") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": {"kind": KIND, "plural": PLURAL, "singular": "probe", "shortNames": ["prb"]},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["target"],
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.minReplicas <= self.replicas",
                                            "message": "minReplicas must not exceed replicas",
                                        }
                                    ],
                                    "properties": {
                                        "target": {
                                            "type": "string",
                                            "x-kubernetes-validations": [
                                                {"rule": "isIP(self)", "message": "must be an IP address"},
                                                {"rule": "self == oldSelf", "message": "target is immutable"},
                                            ],
                                        },
                                        "replicas": {"type": "integer", "minimum": 1, "default": 1},
                                        "minReplicas": {"type": "integer", "minimum": 0, "default": 0},
                                        "mode": {
                                            "type": "string",
                                            "enum": ["watch", "repair"],
                                            "default": "watch",
                                        },
                                        "port": {"x-kubernetes-int-or-string": True},
                                        "note": {"type": "string", "nullable": True, "maxLength": 20},
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "nodes": {
                                            "type": "array",
                                            "x-kubernetes-list-type": "set",
                                            "items": {"type": "string"},
                                            "x-kubernetes-validations": [
                                                {
                                                    "rule": "self.all(n, n.startsWith('node-'))",
                                                    "messageExpression": NODES_MESSAGE,
                                                }
                                            ],
                                        },
                                        "extra": {
                                            "type": "object",
                                            "x-kubernetes-preserve-unknown-fields": True,
                                        },
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                    "properties": {"phase": {"type": "string"}},
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def probe(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {"target": "10.0.0.1", **spec},
    }
