"""Human output: kubectl-like tables, ages instead of timestamps, colour only when asked (a TTY)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import datetime

from proxymedic.api.reasons import Reason, Rule
from proxymedic.runbook.ages import age
from proxymedic.runbook.report import Diagnosis, StatusReport, StepReport, Table, Verdict

RESET = "\033[0m"
COLOURS = {"red": "\033[31m", "green": "\033[32m", "yellow": "\033[33m", "bold": "\033[1m", "dim": "\033[2m"}
HEALTH_COLOURS = {
    "fresh": "green",
    "stale": "red",
    "unknown": "yellow",
    "agent silent": "red",
    "no agent": "yellow",
}
VERDICT_COLOURS = {
    Verdict.OK: "green",
    Verdict.PROBLEM: "red",
    Verdict.UNKNOWN: "yellow",
    Verdict.INFO: "bold",
    Verdict.NOT_APPLICABLE: "dim",
}
STATE_COLOURS = {
    "Active": "green",
    "Degraded": "red",
    "Invalid": "red",
    "Paused": "yellow",
    "Pending": "yellow",
}
WRAP = 100


class Painter:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, colour: str | None) -> str:
        if not self.colour or not colour or not text:
            return text
        return f"{COLOURS[colour]}{text}{RESET}"


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    paint: Painter,
    colours: Sequence[Sequence[str | None]] | None = None,
    indent: str = "",
) -> list[str]:
    """Columns three spaces apart like kubectl; widths from the plain text, colour added after padding."""
    widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
    lines = [indent + "   ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    for index, row in enumerate(rows):
        cells = []
        for column, (cell, width) in enumerate(zip(row, widths, strict=True)):
            colour = colours[index][column] if colours else None
            padded = cell if column == len(row) - 1 else cell.ljust(width)
            cells.append(paint(padded, colour) if colour else padded)
        lines.append(indent + "   ".join(cells).rstrip())
    return lines


def _ago(moment: datetime | None, now: datetime) -> str:
    return age(moment, now) if moment is not None else "-"


def render_status(report: StatusReport, paint: Painter) -> str:
    now = report.generated_at
    out: list[str] = [paint("POLICIES", "bold")]
    if not report.policies:
        out.append(
            "no ProxyHealthPolicy: ProxyMedic decides nothing (kubectl apply -f examples/policy-coredns.yaml)"
        )
    else:
        rows, colours = [], []
        for p in report.policies:
            last = (
                f"{p.last_remediation} ({_ago(p.last_remediation_time, now)} ago)"
                if p.last_remediation
                else "-"
            )
            services = "-" if p.selected_services is None else str(p.selected_services)
            nodes = "-" if p.selected_nodes is None else str(p.selected_nodes)
            rows.append(
                [
                    p.name,
                    p.state,
                    services,
                    nodes,
                    str(p.intents_issued),
                    str(p.actions_applied),
                    str(p.actions_held),
                    str(p.kube_proxy_restarts),
                    last,
                ]
            )
            colours.append([None, STATE_COLOURS.get(p.state.split(" ")[0]), *[None] * 7])
        columns = [
            "NAME",
            "STATE",
            "SERVICES",
            "NODES",
            "INTENTS",
            "APPLIED",
            "HELD",
            "RESTARTS",
            "LAST REMEDIATION",
        ]
        out += table(columns, rows, paint, colours)
        out += [f"  {p.name}: {p.state}: {p.detail}" for p in report.policies if p.detail]

    counts = ", ".join(f"{count} {health}" for health, count in report.node_counts.items())
    out += ["", paint("NODES", "bold") + f" ({counts})"]
    if not report.nodes:
        out.append("no nodes")
    else:
        rows, colours = [], []
        for n in report.nodes:
            percent = "-" if n.conntrack_percent is None else f"{n.conntrack_percent:g}%"
            rows.append(
                [
                    n.name,
                    n.health,
                    n.proxy_mode or "-",
                    n.sync or "-",
                    n.healthz or "-",
                    ",".join(n.findings) or "-",
                    percent,
                    _ago(n.observed_at, now),
                ]
            )
            colours.append([None, HEALTH_COLOURS.get(n.health), *[None] * 6])
        columns = ["NODE", "HEALTH", "MODE", "SYNC", "HEALTHZ", "FINDINGS", "CONNTRACK", "REPORTED"]
        out += table(columns, rows, paint, colours)
        out += [
            f"  {n.name}: {n.health}: {n.reason}" for n in report.nodes if n.health != "fresh" and n.reason
        ]

    out += ["", paint("OPEN INTENTS", "bold")]
    if not report.open_intents:
        out.append("none")
    else:
        rows = [
            [
                i.name,
                i.action + (" (dry-run)" if i.dry_run else ""),
                i.target,
                f"{i.reported_nodes if i.reported_nodes is not None else '?'}/"
                f"{i.target_nodes if i.target_nodes is not None else '?'}",
                _ago(i.decided_at, now),
            ]
            for i in report.open_intents
        ]
        out += table(["NAME", "ACTION", "TARGET", "REPORTED", "AGE"], rows, paint)

    out += ["", paint("RECENT REMEDIATIONS AND HOLDS", "bold")]
    if not report.events:
        out.append("none")
    else:
        rows, colours = [], []
        for e in report.events:
            rows.append(
                [
                    _ago(e.last_seen, now),
                    e.type,
                    e.reason,
                    e.object,
                    e.message + (f" (x{e.count})" if e.count > 1 else ""),
                ]
            )
            colours.append([None, "yellow" if e.type == "Warning" else None, None, None, None])
        out += table(["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], rows, paint, colours)
    return "\n".join(out) + "\n"


def _wrap(text: str, indent: str) -> list[str]:
    """Wrapped at WRAP columns; a bullet's continuation lines hang under its text."""
    hang = "  " if text[:2] in ("- ", "* ") else ""
    return textwrap.wrap(text, WRAP, initial_indent=indent, subsequent_indent=indent + hang) or [indent]


def _step(step: StepReport, paint: Painter) -> list[str]:
    label = f"[{step.verdict.upper()}]"
    title = f"{step.number}. {step.title}"
    out = [
        paint(title, "bold")
        + " " * max(1, WRAP - len(title) - len(label))
        + paint(label, VERDICT_COLOURS[step.verdict])
    ]
    for index, command in enumerate(step.manual):
        out.append(("   instead of: " if index == 0 else "               ") + paint(command, "dim"))
    out += _wrap(step.summary, "   ")
    for detail in step.details:
        out += _wrap(f"- {detail}", "   ")
    if step.table is not None and step.table.rows:
        out += table(step.table.columns, step.table.rows, paint, indent="     ")
    return out


def render_diagnosis(report: Diagnosis, paint: Painter) -> str:
    now = report.generated_at
    verdict = paint(report.verdict.upper(), VERDICT_COLOURS[report.verdict])
    health = paint(report.health, HEALTH_COLOURS.get(report.health))
    out = [
        f"{paint('NODE ' + report.node, 'bold')}   health: {health}   verdict: {verdict}"
        f"   scope: {report.scope}",
        f"agent report {age(report.observed_at, now)} old, agent {report.agent_version or '?'}, "
        f"kernel {report.kernel_version or '?'}",
        "",
    ]
    for line in report.summary:
        out += _wrap(f"* {line}", "")
    for step in report.steps:
        out += ["", *_step(step, paint)]
    return "\n".join(out) + "\n"


def render_explanation(entry: Reason | Rule, paint: Painter) -> str:
    if isinstance(entry, Reason):
        head = [
            paint(entry.name, "bold") + f"   Event reason, type {entry.type}, on {entry.about}",
            f"category: {entry.category}",
        ]
        if entry.warning_when:
            head.append(f"a Warning instead when {entry.warning_when}")
    else:
        head = [paint(entry.name, "bold") + "   guardrail rule named in RemediationHeld Events"]
    out = [*head, ""]
    out += _wrap(entry.meaning, "")
    out += ["", paint("What to do", "bold")]
    for step in entry.todo:
        out += _wrap(f"- {step}", "")
    return "\n".join(out) + "\n"


def render_catalog(reasons: Sequence[Reason], rules: Sequence[Rule], paint: Painter) -> str:
    rows = [[r.name, r.types, str(r.category), r.about] for r in reasons]
    out = [paint("EVENT REASONS", "bold"), *table(["REASON", "TYPE", "CATEGORY", "ON"], rows, paint)]
    out += ["", paint("HOLD RULES (in RemediationHeld messages)", "bold")]
    out += [f"{rule.name}" for rule in rules]
    out += ["", "proxymedic explain NAME tells what one means and what to do."]
    return "\n".join(out) + "\n"


def render_table(value: Table, paint: Painter) -> str:
    return "\n".join(table(value.columns, value.rows, paint)) + "\n"
