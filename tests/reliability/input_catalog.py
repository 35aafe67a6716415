# ruff: noqa: E501  (a table of prose: one row per line reads best)
"""What the hostile-input and security suites try, counted from the very tables and settings they run.

docs/reliability.md states these figures; ``test_input_catalog.py`` fails when they differ, so the
document cannot drift from the suites. Print the tables with ``python -m tests.reliability.input_catalog``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.reliability import (
    input_intents,
    input_policies,
    input_reports,
    input_sensing,
    security_admission,
    test_input_intents,
    test_input_policies,
    test_security_admission,
    test_security_rbac,
    test_security_secrets,
)


@dataclass(frozen=True)
class Row:
    category: str
    input_class: str
    tried: int
    outcome: str
    test: str


def _t(name: str) -> str:
    return f"tests/reliability/{name}.py"


def _rows() -> list[Row]:
    p, i, r, s = input_policies, input_intents, input_reports, input_sensing
    errnos = len(s.NETLINK_ERRNOS)
    crd_checked = len(p.POLICY_CASES) - len(p.MODEL_ONLY)
    hostile_watch_objects = 2 * sum(1 for name in i.IGNORED if not name.startswith("huge-"))
    scenarios = security_admission.scenarios("agent", "operator")
    return [
        Row("Policies", "invalid value in every spec field (wrong types, out of range, negative durations, "
            "bad selectors, unknown fields, huge strings and lists)", len(p.POLICY_CASES),
            "rejected by the models, naming the field path and the reason", _t("test_input_policies")),
        Row("Policies", "the same values POSTed to the API emulator serving the generated CRDs", crd_checked,
            f"422 naming the same field; {len(p.MODEL_ONLY)} cases a schema cannot express are listed with the reason",
            _t("test_input_policies")),
        Row("Policies", "random structures as the spec, and random changes to a valid policy (hypothesis)",
            2 * test_input_policies.HYPOTHESIS_EXAMPLES, "only InvalidObjectError, with field and reason",
            _t("test_input_policies")),
        Row("Intents at the agent", "malformed intents: live backends listed as dead, unknown actions and steps, "
            "forbidden sysctls, impossible expiry, missing or mistyped spec and metadata, huge lists (100,000 items) "
            "and strings (10 MB)", len(i.IGNORED),
            "ignored, logged once with the field and the reason; the agent keeps applying intents (how fast it refuses: `bench/hostile_intents.py`)",
            _t("test_input_intents")),
        Row("Intents at the agent", "expired intents, intents for other nodes", len(i.SKIPPED),
            "not applied, nothing touched", _t("test_input_intents")),
        Row("Intents at the agent", "valid but hostile intents: foreign address families, the VIP as a dead "
            "backend, the largest intent the model admits", len(i.EXECUTED) + 2,
            "executed; no live backend touched; the kernel conntrack adapter never asked across families",
            _t("test_input_intents")),
        Row("Intents at the agent", "hostile objects raw from the intent list and watch", hostile_watch_objects,
            "the watch keeps running and applies the valid intents after them", _t("test_input_intents")),
        Row("Intents at the agent", "random intent-like objects (hypothesis)", test_input_intents.HYPOTHESIS_EXAMPLES,
            "never an exception; the live backend's real server and flow untouched", _t("test_input_intents")),
        Row("Reports at the operator", "malformed reports: wrong types, unknown enums, a report naming another node, "
            "huge lists and strings", len(r.REJECTED), "no evidence: no intent, no restart, no Event",
            _t("test_input_reports")),
        Row("Reports at the operator", "absurd values in well-formed reports", len(r.ABSURD),
            "no intent, no restart", _t("test_input_reports")),
        Row("Reports at the operator", "reports of nodes the cluster does not have", len(r.UNKNOWN_NODES),
            "no evidence: no intent, no restart, no Event", _t("test_input_reports")),
        Row("Node input", "kube-proxy /metrics pages: truncated, garbage, NaN/Inf, impossible times, duplicated, "
            "HTTP errors, over 4 MB", len(s.METRICS_PAGES), "Unknown with the reason (or judged from the valid part); "
            "never Stale without evidence", _t("test_input_sensing")),
        Row("Node input", "kube-proxy /healthz answers", len(s.HEALTHZ_BODIES), "healthz Unknown or as answered; "
            "never Stale from these alone", _t("test_input_sensing")),
        Row("Node input", "/proc/net/ip_vs_conn: truncated lines, bad hex, binary junk, NUL bytes, "
            "over-long lines, 200,000 junk lines, missing or a directory", len(s.IP_VS_CONN) + 2,
            "only well-formed lines counted; an unreadable table is a named problem", _t("test_input_sensing")),
        Row("Node input", "sysctl files: junk content, 64-bit overflow, open errors",
            len(s.SYSCTL_FILES) + len(s.SYSCTL_OPEN_ERRNOS), "the value is unknown (left out)",
            _t("test_input_sensing")),
        Row("Node input", f"netlink errors ({errnos} errno) at each IPVS and ctnetlink call while sensing",
            errnos * (len(s.IPVS_SENSING_CALLS) + 2 * len(s.CONNTRACK_SENSING_CALLS)),
            "the signal is unknown and named in problems (ctnetlink falls back to /proc where it can)",
            _t("test_input_sensing")),
        Row("Node input", f"netlink errors ({errnos} errno) while removing a stale real server, at its lookup and at its removal",
            errnos * len(s.IPVS_REPAIR_CALLS), "a Failed result naming the step and the cause (ENOENT/ESRCH: "
            "already clean)", _t("test_input_sensing")),
        Row("Security", "writers of a NodeProxyHealth against the chart's ValidatingAdmissionPolicy (CEL evaluated)",
            len(scenarios), "own node's agent allowed; other node, no or two node claims, the operator denied "
            "with the reason", _t("test_security_admission")),
        Row("Security", "broken admission policies (mutated expressions, fail-open, warn-only, unbound)",
            len(test_security_admission.BREAKS), "each reported by the check", _t("test_security_admission")),
        Row("Security", "broken RBAC: intent writes for the agent, a user, a group, another ServiceAccount, "
            "aggregation", len(test_security_rbac.BREAKS), "each reported; the chart grants intent writes to the "
            "operator alone", _t("test_security_rbac")),
        Row("Security", "a recognisable bearer token through 401 and 403 refusals and the operator's Events",
            len(test_security_secrets.REFUSALS) + 2, "the token appears in no log line, Event or error",
            _t("test_security_secrets")),
    ]  # fmt: skip


ROWS = _rows()
CATALOG_FILE = "tests/reliability/input_catalog.py"


def markdown() -> str:
    """One table per category, as docs/reliability.md carries them."""
    out: list[str] = []
    for category in dict.fromkeys(row.category for row in ROWS):
        out += [f"#### {category}", "", "| Input class | Tried | Outcome | Test |", "|---|---:|---|---|"]
        out += [
            f"| {r.input_class} | {r.tried:,} | {r.outcome} | `{r.test}` |"
            for r in ROWS
            if r.category == category
        ]
        out.append("")
    total = sum(row.tried for row in ROWS)
    out.append(f"Total: {total:,} inputs tried (counted by `{CATALOG_FILE}`).")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
