"""An in-process Kubernetes API emulator built on kmock, for tests, the demo and the benchmarks.

The Kopf login helper lives in :mod:`proxymedic.emulator.kopf_login`, so that importing the
emulator does not import Kopf.
"""

from proxymedic.emulator.connection import kubeconfig, kubernetes_configuration, write_kubeconfig
from proxymedic.emulator.resources import BUILTIN_RESOURCES, ResourceSpec, kopf_peering_crds, specs_from_crd
from proxymedic.emulator.runner import EmulatorThread, serve
from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.emulator.store import ObjectStore

__all__ = [
    "BUILTIN_RESOURCES",
    "EmulatorThread",
    "KubernetesApiEmulator",
    "ObjectStore",
    "ResourceSpec",
    "kopf_peering_crds",
    "kubeconfig",
    "kubernetes_configuration",
    "serve",
    "specs_from_crd",
    "write_kubeconfig",
]
