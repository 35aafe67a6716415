"""Every Event reason ProxyMedic posts, what it means, and what to do: the one catalog of reasons.

``proxymedic explain REASON`` prints an entry; a test scans the operator's and the agent's
source for every reason they post and fails when one is missing here. The rules a
``RemediationHeld`` Event names (the guardrails) are explained here too.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EventKind(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


class Category(enum.StrEnum):
    """What an Event reports: ``proxymedic status`` lists remediations and holds."""

    REMEDIATION = "remediation"
    """An action ran, ran in dry-run, or failed."""
    HOLD = "hold"
    """A guardrail kept an action from running."""
    DETECTION = "detection"
    """Something was found on a node; the action, if any, follows as its own Event."""
    POLICY = "policy"
    """About a policy itself."""


@dataclass(frozen=True)
class Reason:
    name: str
    type: EventKind
    category: Category
    about: str
    """The object the Event is posted on."""
    meaning: str
    todo: tuple[str, ...]
    """What to do, in order; commands in backquotes."""
    warning_when: str = ""
    """When an Event of this reason is a Warning instead of its usual type; empty if never."""

    @property
    def types(self) -> str:
        """``Normal``, or ``Normal or Warning`` for a reason whose type depends on the outcome."""
        return f"{self.type} or {EventKind.WARNING}" if self.warning_when else str(self.type)


# An intent's summary Event keeps its reason when the intent expires before every node reported.
_UNREPORTED = "some target nodes did not report before the intent expired"

STALE_CONNECTIONS_FLUSHED = "StaleConnectionsFlushed"
STALE_REAL_SERVER_REMOVED = "StaleRealServerRemoved"
UDP_TIMEOUT_SET = "UDPTimeoutSet"
SYSCTLS_ENFORCED = "SysctlsEnforced"
CONNTRACK_MAX_RAISED = "ConntrackMaxRaised"
KUBE_PROXY_RESTARTED = "KubeProxyRestarted"
DRY_RUN = "DryRun"
REMEDIATION_FAILED = "RemediationFailed"
REMEDIATION_HELD = "RemediationHeld"
ANOMALY_BREAKER_TRIPPED = "AnomalyBreakerTripped"
ANOMALY_BREAKER_RESET = "AnomalyBreakerReset"
KUBE_PROXY_SYNC_STALE = "KubeProxySyncStale"
KUBE_PROXY_WATCH_SILENT = "KubeProxyWatchSilent"
CONNTRACK_PRESSURE = "ConntrackPressure"
KUBE_PROXY_NOT_FOUND = "KubeProxyNotFound"
KUBE_PROXY_NOT_RESTARTABLE = "KubeProxyNotRestartable"
SYSCTL_NOT_ENFORCED = "SysctlNotEnforced"
POLICY_REJECTED = "PolicyRejected"

_DIAGNOSE = (
    "`proxymedic diagnose NODE` (or `kubectl proxymedic diagnose NODE`) for the node named in the message"
)

REASONS: dict[str, Reason] = {
    reason.name: reason
    for reason in (
        Reason(
            STALE_CONNECTIONS_FLUSHED,
            EventKind.NORMAL,
            Category.REMEDIATION,
            "the Service",
            "Backends left the Service (their pods are gone, or stopped being ready while others are). "
            "Each target node expired the IPVS connection entries pointing at them (and their UDP "
            "conntrack entries where the policy says so), so clients stuck on a dead backend are "
            "rescheduled at once instead of after the 300 s UDP timeout. The message names the VIP and "
            "port, the dead backends, how many nodes changed or were already clean, and the time taken.",
            (
                "Nothing, when every node changed or was already clean.",
                "If nodes did not report: `kubectl get nodeproxyhealths` (is their agent silent?), "
                "then " + _DIAGNOSE + ".",
            ),
            _UNREPORTED,
        ),
        Reason(
            STALE_REAL_SERVER_REMOVED,
            EventKind.NORMAL,
            Category.REMEDIATION,
            "the Service",
            "kube-proxy left an IPVS real server for a backend that left the Service; the node's agent "
            "removed it (the kernel then expires its connections with net.ipv4.vs.expire_nodest_conn=1). "
            "kube-proxy should have done it itself: a stalled or stale kube-proxy is the usual cause.",
            (
                _DIAGNOSE + ": look at step 3 (sync freshness) and step 4 (real servers).",
                "If the real server comes back, kube-proxy's cache is stale: ProxyMedic escalates to a "
                "kube-proxy restart (KubeProxyRestarted, or RemediationHeld naming the rule).",
            ),
            _UNREPORTED,
        ),
        Reason(
            UDP_TIMEOUT_SET,
            EventKind.NORMAL,
            Category.REMEDIATION,
            "the node, or the intent when several nodes changed",
            "The IPVS UDP timeout was set to the policy's value (ipvsUDPTimeout). It bounds how long NEW "
            "UDP entries live; it never shortens entries that exist already: it prevents, it does not cure.",
            ("Nothing. To change the value, edit the policy's spec.actions.ipvsUDPTimeout.timeout.",),
            _UNREPORTED,
        ),
        Reason(
            SYSCTLS_ENFORCED,
            EventKind.NORMAL,
            Category.REMEDIATION,
            "the node",
            "A node's net.ipv4.vs.expire_nodest_conn or expire_quiescent_template was 0, so connections "
            "to removed backends lived until their timeout; the agent set them to 1.",
            (
                "Find what resets the sysctl on that node (a tuning DaemonSet, a node image, "
                "/etc/sysctl.d) and fix it there; ProxyMedic repairs it on every drift.",
            ),
            _UNREPORTED,
        ),
        Reason(
            CONNTRACK_MAX_RAISED,
            EventKind.NORMAL,
            Category.REMEDIATION,
            "the node",
            "The node's conntrack table was fuller than the policy's threshold; the agent raised "
            "net.netfilter.nf_conntrack_max by the policy's step, never beyond its ceiling.",
            (
                "Find what fills the table: `conntrack -S` and `conntrack -L | sort | uniq -c` on the node.",
                "Raise the ceiling in the policy (raiseConntrackMax.ceiling) only if the load is legitimate.",
            ),
            _UNREPORTED,
        ),
        Reason(
            KUBE_PROXY_RESTARTED,
            EventKind.WARNING,
            Category.REMEDIATION,
            "the node",
            "The operator deleted the node's kube-proxy pod so its DaemonSet recreates it: kube-proxy's "
            "sync was stale, a live backend had no real server, or a removed real server came back "
            "(its cache is stale, e.g. a dead API watch). A restart flushes UDP conntrack for every "
            "Service on the node (kubernetes#122740), which is why it is the last, guarded step.",
            (
                "Read the old kube-proxy's logs (`kubectl -n kube-system logs -p -l k8s-app=kube-proxy "
                "--field-selector spec.nodeName=NODE` or from your log store): a watch error, a hung "
                "iptables-restore, lock contention.",
                _DIAGNOSE + " shows whether the new kube-proxy synced (step 3).",
            ),
        ),
        Reason(
            DRY_RUN,
            EventKind.NORMAL,
            Category.REMEDIATION,
            "the Service or the node",
            "The policy is in dry-run (guardrails.dryRun): the message says what would have been done; "
            "nothing changed on any node.",
            (
                "Read the DryRun Events for a while; when they are what you want, set the policy's "
                "spec.guardrails.dryRun to false.",
            ),
            _UNREPORTED,
        ),
        Reason(
            REMEDIATION_FAILED,
            EventKind.WARNING,
            Category.REMEDIATION,
            "the Service or the node",
            "At least one node failed or refused an intent. Refused: a step would have touched a backend "
            "that is live. Failed: a step returned an error (the message names the node and the error).",
            (
                "`kubectl get nodeproxyhealth NODE -o yaml`: read status.recentResults and status.problems.",
                "A read-only file system or a permission error on a sysctl: the agent is not privileged "
                "(set the chart's agent.sysctlWrites, or disable enforceSysctls / raiseConntrackMax).",
                '"no IPVS on this node": the node runs kube-proxy in iptables or nftables mode.',
            ),
        ),
        Reason(
            REMEDIATION_HELD,
            EventKind.WARNING,
            Category.HOLD,
            "the Service or the node",
            "A guardrail held an action. The message starts with the rule that held it (run "
            "`proxymedic explain RULE`): Paused, ActionDisabled, OutsideMaintenanceWindow, MinObservation, "
            "NodeCooldown, NodeHourlyBudget, ClusterHourlyBudget, MaxConcurrentRestarts, RestartInProgress, "
            "AnomalyBreaker. "
            "The same hold is posted at most every five minutes per object and rule.",
            (
                "`proxymedic explain RULE` for the rule in the message.",
                _DIAGNOSE + ": its last step shows what ProxyMedic would do and what holds it.",
            ),
        ),
        Reason(
            ANOMALY_BREAKER_TRIPPED,
            EventKind.WARNING,
            Category.HOLD,
            "the policy",
            "More than anomalyThresholdPercent of the policy's nodes (and at least anomalyMinNodes) look "
            "stale at once. That is a control-plane or network problem, not a node problem, so every "
            "kube-proxy restart is held until fewer nodes look stale.",
            (
                "Look at the API server (latency, errors, watch restarts) and the network between the "
                "nodes and the control plane, not at the nodes.",
                "`proxymedic status` lists which nodes look stale.",
            ),
        ),
        Reason(
            ANOMALY_BREAKER_RESET,
            EventKind.NORMAL,
            Category.HOLD,
            "the policy",
            "Few enough nodes look stale again: kube-proxy restarts may run.",
            ("Nothing.",),
        ),
        Reason(
            KUBE_PROXY_SYNC_STALE,
            EventKind.WARNING,
            Category.DETECTION,
            "the node",
            "The node's kube-proxy has not synced its rules while changes are pending (its last sync is "
            "older than the threshold and work was queued after it, or healthz reports an old update). "
            "Posted once per episode; the restart, if the policy allows it, follows as its own Event.",
            (
                _DIAGNOSE + ": step 3 shows the sync timestamps and healthz.",
                "On the node: `curl -s http://127.0.0.1:10249/metrics | grep sync_proxy_rules_last`.",
            ),
        ),
        Reason(
            KUBE_PROXY_WATCH_SILENT,
            EventKind.WARNING,
            Category.DETECTION,
            "the node",
            "The node's kube-proxy counted none of the EndpointSlice changes that most other nodes' "
            "kube-proxies counted (kube-proxy's endpoint changes counter stayed flat), for longer than "
            "the policy's restartKubeProxy.staleAfter: its watch of the API server is dead, so its rules "
            "are its stale cache's, while its healthz answers 200. Posted once per episode; the restart, "
            "if the policy allows it, follows as its own Event.",
            (
                _DIAGNOSE + ": step 3 shows the node's counter.",
                "On the node: `curl -s http://127.0.0.1:10249/metrics | grep endpoint_changes_total`, twice "
                "across a change of any EndpointSlice; compare with another node.",
                "kube-proxy's log on the node: watch errors, or nothing at all since the stall began.",
            ),
        ),
        Reason(
            CONNTRACK_PRESSURE,
            EventKind.WARNING,
            Category.DETECTION,
            "the node",
            "The node's conntrack table is fuller than the threshold (the policy's "
            "raiseConntrackMax.thresholdPercent, 90% by default): new flows will be dropped when it is "
            "full. Posted once per episode.",
            (
                _DIAGNOSE + ": step 5 shows count, max and drops.",
                "Find what fills the table (`conntrack -S`, `conntrack -L`); enable raiseConntrackMax "
                "with a ceiling if the load is legitimate.",
            ),
        ),
        Reason(
            SYSCTL_NOT_ENFORCED,
            EventKind.WARNING,
            Category.DETECTION,
            "the node",
            "The node's net.ipv4.vs.expire_nodest_conn is 0 and no policy can set it to 1: none selecting "
            "the node enables enforceSysctls, or the agent cannot write sysctls (its container sees "
            "/proc/sys read-only, the chart's default). Until it is 1, a client's UDP flow to a removed "
            "backend keeps failing until the IPVS UDP timeout (300 s by default): the kernel keeps the "
            "entry, and neither removing the real server nor a flush clears it. Posted once per node; "
            "the policies selecting the node carry the condition SysctlNotEnforced meanwhile.",
            (
                "Let ProxyMedic set it: `helm upgrade RELEASE --reuse-values --set agent.sysctlWrites=true` "
                "(the agent container becomes privileged, and the chart's coredns policy enables "
                "enforceSysctls); in a policy of your own, also set spec.actions.enforceSysctls.enabled: "
                "true.",
                "Or set it on the node yourself: `sysctl -w net.ipv4.vs.expire_nodest_conn=1`, persisted "
                "in /etc/sysctl.d, and find what reset it (kube-proxy sets it to 1 when it starts in IPVS "
                "mode).",
                _DIAGNOSE + ": step 6 shows the sysctls and what keeps ProxyMedic from setting them.",
            ),
        ),
        Reason(
            KUBE_PROXY_NOT_FOUND,
            EventKind.WARNING,
            Category.DETECTION,
            "the node",
            "A kube-proxy restart was decided, but no pod matched the policy's restartKubeProxy.target "
            "(namespace and labels) on that node (kube-proxy may run outside Kubernetes: a systemd unit, "
            "k3s). Posted once per episode; the operator looks again after a growing back-off.",
            (
                "`kubectl get pods -A -o wide --field-selector spec.nodeName=NODE` and compare the "
                "kube-proxy pod's namespace and labels with the policy's restartKubeProxy.target.",
                "The target namespace must be the chart's kubeProxy.namespace: the operator may delete "
                "pods there only.",
            ),
        ),
        Reason(
            KUBE_PROXY_NOT_RESTARTABLE,
            EventKind.WARNING,
            Category.DETECTION,
            "the node",
            "A kube-proxy restart was decided, but the node's kube-proxy pod is not one a DaemonSet "
            "brings back: a static pod's mirror (the kubelet recreates it from its manifest, so deleting "
            "it restarts nothing) or a pod without a DaemonSet controller. Nothing was deleted and no "
            "budget was spent; the operator looks again after a growing back-off, and posts this once "
            "per episode.",
            (
                "Restart kube-proxy on the node itself: for a static pod, move its manifest out of the "
                "kubelet's manifest folder and back; for a systemd unit, `systemctl restart kube-proxy`.",
                "To keep ProxyMedic from deciding restarts there, disable restartKubeProxy in the policy "
                "or leave the node out of its node selector.",
            ),
        ),
        Reason(
            POLICY_REJECTED,
            EventKind.WARNING,
            Category.POLICY,
            "the policy",
            "The policy is invalid and not applied (an invalid policy is never half-applied); the "
            "message names every bad field.",
            ("Fix the fields named in the message; `proxymedic validate FILE` checks a manifest offline.",),
        ),
    )
}


@dataclass(frozen=True)
class Rule:
    """A guardrail rule, as named at the start of a RemediationHeld message."""

    name: str
    meaning: str
    todo: tuple[str, ...]


HOLD_RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "Paused",
            'The policy is paused (spec.guardrails.paused, or the annotation proxymedic.io/paused="true"): '
            "nothing is decided.",
            (
                "Unpause it when you are done: `kubectl annotate php NAME proxymedic.io/paused-` "
                "or set spec.guardrails.paused to false.",
            ),
        ),
        Rule(
            "ActionDisabled",
            "The action is not enabled in the policy; every action is off until the policy enables it.",
            ("Enable it under spec.actions if you want ProxyMedic to take it.",),
        ),
        Rule(
            "OutsideMaintenanceWindow",
            "Disruptive actions (kube-proxy restart, conntrack max raise) run only inside one of the "
            "policy's maintenance windows, and none is open now.",
            ("Wait for the window, act by hand, or widen spec.guardrails.maintenanceWindows.",),
        ),
        Rule(
            "MinObservation",
            "The finding has not lasted the policy's minObservation yet: each escalation step waits, so "
            "kube-proxy's own sync and the cheaper steps get their chance first.",
            ("Usually nothing: the step runs once the finding has lasted long enough.",),
        ),
        Rule(
            "NodeCooldown",
            "The node had a tuning or disruptive action less than nodeCooldown ago.",
            (
                "Usually nothing: the action runs when the cooldown ends if the finding persists.",
                "A node that needs a restart again right after one has a kube-proxy that keeps failing: "
                "read its logs.",
            ),
        ),
        Rule(
            "NodeHourlyBudget",
            "The node used its hourly budget of tuning and disruptive actions (hourlyBudget.perNode).",
            ("Find out why this node needs so many repairs: `proxymedic diagnose NODE`, kube-proxy's logs.",),
        ),
        Rule(
            "ClusterHourlyBudget",
            "The cluster used its hourly budget of actions (hourlyBudget.perCluster).",
            ("Look for a cause shared by the nodes: `proxymedic status`.",),
        ),
        Rule(
            "MaxConcurrentRestarts",
            "Other kube-proxy restarts are still in progress (a restart counts until the new kube-proxy "
            "reports a fresh sync, at most five minutes); maxConcurrentKubeProxyRestarts is reached.",
            ("Usually nothing: the restart runs when the others finish.",),
        ),
        Rule(
            "RestartInProgress",
            "This node's kube-proxy was restarted and has not reported a fresh sync since (a restart "
            "counts as in progress for at most five minutes): a second restart would only interrupt its "
            "start, whatever the node cooldown says.",
            (
                "Usually nothing: a kube-proxy's first sync takes longer on a large cluster.",
                "If it never syncs, read its logs: `kubectl -n kube-system logs POD`.",
            ),
        ),
        Rule(
            "AnomalyBreaker",
            "Too many nodes look stale at once (anomalyThresholdPercent, anomalyMinNodes): the cause is "
            "the control plane or the network, so every kube-proxy restart is held.",
            ("Look at the API server and the network, not at the nodes.",),
        ),
    )
}


def lookup(name: str) -> Reason | Rule | None:
    """An Event reason or a hold rule, matched without regard to case."""
    for table in (REASONS, HOLD_RULES):
        for key, entry in table.items():
            if key.lower() == name.lower():
                return entry
    return None
