"""``proxymedic status``, ``diagnose NODE`` and ``explain REASON``: the runbook in one command.

They read the cluster through the user's kubeconfig (``--kubeconfig``, ``--context``, as
kubectl), print tables for people (colour only on a terminal) or ``-o json|yaml`` for scripts,
and end with exit code 0, or with one line on stderr and a non-zero code:
1 for a node, agent or reason that is not there, 3 when the cluster cannot be read
(unreachable, CRDs missing, no permission), 4 when the kubeconfig is missing, unreadable or
invalid; argparse's usage errors are 2. Their options are in ``options.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import difflib
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml

from proxymedic.api.reasons import HOLD_RULES, REASONS, lookup
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.config import KubeconfigError, load_connection
from proxymedic.runbook.diagnose import build_diagnosis
from proxymedic.runbook.errors import (
    ClusterAccessError,
    KubeconfigUnusableError,
    RunbookError,
    UnknownReasonError,
)
from proxymedic.runbook.fetch import fetch_snapshot
from proxymedic.runbook.render import (
    Painter,
    render_catalog,
    render_diagnosis,
    render_explanation,
    render_status,
)
from proxymedic.runbook.report import Diagnosis, Report, StatusReport
from proxymedic.runbook.snapshot import Snapshot, build_view
from proxymedic.runbook.status import DEFAULT_EVENT_LIMIT, build_status

Clock = Callable[[], datetime]


def _painter(args: argparse.Namespace, stream: TextIO) -> Painter:
    if args.color == "always":
        return Painter(True)
    if args.color == "never":
        return Painter(False)
    return Painter(stream.isatty() and not os.environ.get("NO_COLOR"))


def _connection(args: argparse.Namespace) -> Connection:
    try:
        return load_connection(args.kubeconfig, args.context)
    except KubeconfigError as exc:
        raise KubeconfigUnusableError(str(exc)) from None
    except Exception as exc:  # the kubernetes client raises several kinds for a bad kubeconfig
        raise ClusterAccessError(f"cannot load the kubeconfig: {exc}") from None


async def read_cluster(connection: Connection) -> Snapshot:
    async with KubeClient(connection) as client:
        return await fetch_snapshot(client, connection.server)


def _emit(data: Any, output: str, stream: TextIO) -> None:
    if output == "json":
        stream.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        stream.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000))


def show(report: Report, output: str, paint: Painter, stream: TextIO) -> None:
    if output != "text":
        _emit(report.dump(), output, stream)
    elif isinstance(report, StatusReport):
        stream.write(render_status(report, paint))
    elif isinstance(report, Diagnosis):
        stream.write(render_diagnosis(report, paint))


def status_report(snapshot: Snapshot, now: datetime, events: int = DEFAULT_EVENT_LIMIT) -> Report:
    return build_status(build_view(snapshot), now, events)


def diagnosis_report(snapshot: Snapshot, node: str, now: datetime) -> Report:
    return build_diagnosis(build_view(snapshot), node, now)


def _explain(args: argparse.Namespace, paint: Painter, stream: TextIO) -> None:
    if args.reason is None:
        if args.output == "text":
            stream.write(render_catalog(list(REASONS.values()), list(HOLD_RULES.values()), paint))
        else:
            _emit(
                {
                    "reasons": [_plain(r) for r in REASONS.values()],
                    "holdRules": [_plain(r) for r in HOLD_RULES.values()],
                },
                args.output,
                stream,
            )
        return
    entry = lookup(args.reason)
    if entry is None:
        close = difflib.get_close_matches(args.reason, [*REASONS, *HOLD_RULES], n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UnknownReasonError(
            f'"{args.reason}" is not an Event reason of ProxyMedic{hint} (run explain without an argument '
            "for the list)"
        )
    if args.output == "text":
        stream.write(render_explanation(entry, paint))
    else:
        _emit(_plain(entry), args.output, stream)


def _plain(entry: Any) -> dict[str, Any]:
    data = dataclasses.asdict(entry)
    return {key: (list(value) if isinstance(value, tuple) else str(value)) for key, value in data.items()}


def run(args: argparse.Namespace, prog: str, clock: Clock | None = None) -> int:
    """Run one of the three commands; errors become one line on stderr and an exit code."""
    stream = sys.stdout
    paint = _painter(args, stream)
    try:
        if args.command == "explain":
            _explain(args, paint, stream)
            return 0
        snapshot = asyncio.run(read_cluster(_connection(args)))
        now = clock() if clock is not None else datetime.now(UTC)
        if args.command == "status":
            report = status_report(snapshot, now, args.events)
        else:
            report = diagnosis_report(snapshot, args.node, now)
        show(report, args.output, paint, stream)
    except RunbookError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
