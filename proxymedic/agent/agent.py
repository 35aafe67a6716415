"""The node agent's state and decisions, free of any API connection.

``NodeAgent`` takes intents as the API serves them, applies those addressed to its node, and
builds the status to report; the runner (``runner.py``) connects it to the API server. The
benchmarks drive many ``NodeAgent``s from one shared watch through the same methods.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from proxymedic import __version__
from proxymedic.agent.executor import execute
from proxymedic.agent.liveness import InUse, LiveNow
from proxymedic.agent.node import NodeDataplane
from proxymedic.agent.sensing import LocalFindings, SenseSettings, sense
from proxymedic.api.errors import describe_errors
from proxymedic.api.health import MAX_RECENT_RESULTS, IntentResult, NodeProxyHealthStatus
from proxymedic.api.intent import IntentAction, RemediationIntent

logger = logging.getLogger("proxymedic.agent")

MAX_REMEMBERED_MALFORMED = 4096
"""Malformed intents already logged, remembered so each is logged once; bounded."""


def _identity(raw: object) -> str:
    """The uid, else the name, of whatever arrived as an intent, shortened for a log line."""
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    if not isinstance(meta, Mapping):
        return f"({type(raw).__name__} without metadata)"
    return str(meta.get("uid") or meta.get("name"))[:253]


def intent_key(raw: object) -> str | None:
    """How the agent keys an intent that arrived (its uid, else its name); None without one."""
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    key = (meta.get("uid") or meta.get("name")) if isinstance(meta, Mapping) else None
    return key if isinstance(key, str) else None


@dataclass
class AgentSettings:
    node_name: str
    sense_interval: float = 10.0
    """Seconds between sensing rounds; a report is written only when something material changed."""
    heartbeat: float = 300.0
    """Seconds after which the status is written even if nothing changed (proves the agent alive).
    At 5,000 nodes, 300 s costs 17 writes/s: inside the API write budget (docs/architecture.md,
    "The contract")."""
    min_write_interval: float = 1.0
    """Results of intents that arrive within this window share one status write."""
    sense: SenseSettings = field(default_factory=SenseSettings)


def fingerprint(status: NodeProxyHealthStatus) -> tuple[Any, ...]:
    """What makes a status worth writing: state, not counters or timestamps that move every round."""
    return (
        status.proxy_mode,
        status.kube_proxy.freshness,
        status.kube_proxy.healthz,
        status.ipvs,
        tuple(sorted(status.sysctls.items())),
        status.sysctls_writable,
        tuple(
            (
                vs.vip,
                vs.port,
                vs.protocol,
                tuple((rs.ip, rs.port, rs.weight) for rs in vs.real_servers),
                tuple((o.ip, o.port) for o in vs.orphaned_connections),
            )
            for vs in status.virtual_servers
        ),
        tuple((f.type, f.vip, f.port, f.backend) for f in status.findings),
        tuple((r.intent, r.outcome) for r in status.recent_results),
        tuple(status.problems),
    )


class NodeAgent:
    """Numbers its sensing rounds (``round``, from 1 in each ``incarnation``) so the operator can tell
    a report sensed after a change from one sensed before it without comparing clocks."""

    def __init__(
        self,
        settings: AgentSettings,
        dataplane: NodeDataplane,
        version: str = __version__,
        live_now: LiveNow | None = None,
    ) -> None:
        self.settings = settings
        self.dataplane = dataplane
        self.version = version
        self.live_now = live_now
        """Asks the API which backends are in use now, before a flush; None where there is no API."""
        self.incarnation = uuid.uuid4().hex
        """New for every run of the agent: a restarted agent counts its rounds from 1 again."""
        self.round = 0
        """The last sensing round begun."""
        self.node_labels: Mapping[str, str] = {}
        self._results: OrderedDict[str, IntentResult] = OrderedDict()
        self.unread: dict[str, Exception] = {}
        """Intents addressed here (by uid, else name) left unapplied because the Service's
        EndpointSlices could not be read, with the error: the runner reads again, backing off."""
        self._malformed: set[str] = set()
        self._local = LocalFindings()
        self._written: tuple[Any, ...] | None = None
        self._written_at = float("-inf")

    @property
    def node_name(self) -> str:
        return self.settings.node_name

    def _parse(self, raw: object) -> RemediationIntent | None:
        try:
            return RemediationIntent.model_validate(raw)
        except ValidationError as exc:
            uid = _identity(raw)
            if uid not in self._malformed:
                if len(self._malformed) >= MAX_REMEMBERED_MALFORMED:
                    self._malformed.clear()  # bounded memory; a forgotten one is only logged again
                self._malformed.add(uid)
                logger.warning("ignoring malformed intent %s: %s", uid, "; ".join(describe_errors(exc)[:3]))
            return None

    def wants(self, intent: RemediationIntent) -> bool:
        """Addressed to this node, not expired, and not applied yet."""
        key = intent.metadata.uid or intent.metadata.name
        if key in self._results:
            return False
        if intent.spec.expires_at <= datetime.fromtimestamp(self.dataplane.clock(), UTC):
            return False
        return intent.spec.addresses(self.node_name, self.node_labels)

    async def on_intent(self, raw: object) -> IntentResult | None:
        """Apply an intent if it is for this node; the result, or None when there was nothing to do.

        Whatever arrives (the watch hands over any JSON value) is either applied, or logged once
        with the reason and ignored: it never raises.
        """
        key = intent_key(raw)
        if key is not None and key in self._results:
            return None  # applied already: every status update of the intent comes by, skip parsing it
        intent = self._parse(raw)
        if intent is None:
            return None
        key = intent.metadata.uid or intent.metadata.name
        if not self.wants(intent):
            self.unread.pop(key, None)  # expired meanwhile, or not for this node
            return None
        in_use: InUse | None = None
        service = intent.spec.service
        if (
            self.live_now is not None
            and service is not None
            and intent.spec.action is IntentAction.FLUSH_STALE_BACKENDS
        ):
            try:
                in_use = await self.live_now(service.namespace, service.name)
            except Exception as exc:  # unknown is never a reason to act: read again later
                logger.warning(
                    "intent %s: not applied yet: cannot read %s/%s's EndpointSlices to check that its "
                    "dead backends are not live now: %s",
                    intent.metadata.name,
                    service.namespace,
                    service.name,
                    str(exc) or type(exc).__name__,  # a timeout says nothing of itself
                )
                self.unread[key] = exc
                return None
        self.unread.pop(key, None)
        result = await execute(intent, self.dataplane, in_use)
        self._results[key] = result
        while len(self._results) > 4 * MAX_RECENT_RESULTS:
            self._results.popitem(last=False)
        log = logger.warning if result.outcome in ("Failed", "Refused") else logger.info
        log("intent %s: %s: %s", intent.metadata.name, result.outcome, result.message)
        return result

    def recent_results(self) -> list[IntentResult]:
        """The latest results, newest first, verified by a sensing round or not yet."""
        return list(reversed(self._results.values()))[:MAX_RECENT_RESULTS]

    def _verified_results(self) -> list[IntentResult]:
        """What a report carries: a result appears with the round that sensed the node after its
        intent was applied, never in a report sensed before that."""
        verified = (r for r in reversed(self._results.values()) if r.verified_round is not None)
        return list(itertools.islice(verified, MAX_RECENT_RESULTS))

    async def observe(self) -> NodeProxyHealthStatus:
        """One sensing round: it verifies the results of intents applied before it began."""
        self.round += 1
        applied = [key for key, result in self._results.items() if result.verified_round is None]
        status = await sense(self.dataplane, self.settings.sense, self._local, self.version)
        for key in applied:
            if (result := self._results.get(key)) is not None:
                self._results[key] = result.model_copy(update={"verified_round": self.round})
        return status.model_copy(
            update={
                "incarnation": self.incarnation,
                "round": self.round,
                "recent_results": self._verified_results(),
            }
        )

    def due(self, status: NodeProxyHealthStatus, now: float) -> bool:
        """Whether to write this status now: something material changed, or the heartbeat is due."""
        if now - self._written_at >= self.settings.heartbeat:
            return True
        return fingerprint(status) != self._written

    def written(self, status: NodeProxyHealthStatus, now: float) -> None:
        self._written = fingerprint(status)
        self._written_at = now
