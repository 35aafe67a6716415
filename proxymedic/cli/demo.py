"""``proxymedic demo``: what can run without a cluster today.

The end-to-end demo (operator and agents on the API emulator during a CoreDNS rollout)
arrives with the operator; until then this shows the contract: the example policy with
every default the API server would apply, and how a bad policy is rejected.
"""

from __future__ import annotations

import yaml

from proxymedic.api.errors import InvalidObjectError, parse_object
from proxymedic.api.meta import resource_dict

EXAMPLE_POLICY = """\
apiVersion: proxymedic.io/v1alpha1
kind: ProxyHealthPolicy
metadata: {name: coredns}
spec:
  services:
    namespaces: [kube-system]
    labelSelector: {matchLabels: {k8s-app: kube-dns}}
  actions:
    flushStaleConnections: {enabled: true}
    removeStaleRealServers: {enabled: true}
  guardrails: {dryRun: true}
"""

BROKEN_POLICY = """\
apiVersion: proxymedic.io/v1alpha1
kind: ProxyHealthPolicy
metadata: {name: broken}
spec:
  services: {protocols: [DNS]}
  guardrails:
    nodeCooldown: 2 minutes
    maxConcurrentKubeProxyRestarts: 150%
    maintenanceWindows: [{start: "22:00", end: "22:00"}]
"""


def run_demo() -> int:
    print("ProxyMedic demo: the operator and agent demo arrives with the operator.")
    print("Meanwhile, the contract they share.\n")
    policy = parse_object(yaml.safe_load(EXAMPLE_POLICY))
    print("A dry-run CoreDNS policy, with the defaults the API server applies:\n")
    print(yaml.safe_dump(resource_dict(policy), sort_keys=False))
    print("A broken policy is rejected, naming each field and the reason:\n")
    try:
        parse_object(yaml.safe_load(BROKEN_POLICY))
    except InvalidObjectError as exc:
        for problem in exc.problems:
            print(f"  {problem}")
    return 0
