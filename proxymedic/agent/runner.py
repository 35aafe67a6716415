"""Connect a NodeAgent to the API server: watch intents, sense, and report NodeProxyHealth.

The agent writes only its own NodeProxyHealth; it never writes to intents (no finalizers,
no annotations). It survives API errors with jittered, capped backoff and relists on 410.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import aiohttp

from proxymedic.agent.agent import NodeAgent, intent_key
from proxymedic.agent.liveness import InUse, in_use
from proxymedic.agent.metrics import AgentMetrics
from proxymedic.agent.scope import node_internal_ips, policy_scope, sensing_keys
from proxymedic.agent.sensing import REPORTED_SYSCTLS
from proxymedic.api.health import NodeProxyHealthStatus
from proxymedic.api.policy import SensingScope
from proxymedic.kube.client import ApiError, ConflictError, GoneError, KubeClient, NotFoundError, retry_delay
from proxymedic.kube.resources import ENDPOINT_SLICES, INTENTS, NODE_HEALTHS, NODES, POLICIES

logger = logging.getLogger("proxymedic.agent")

BACKOFF_CAP = 30.0
TRANSIENT = (ApiError, aiohttp.ClientError, TimeoutError, ValueError)


def _decided_at(obj: object) -> str:
    """The sort key of a listed intent; whatever a malformed one holds sorts first, never raises."""
    spec = obj.get("spec") if isinstance(obj, dict) else None
    decided = spec.get("decidedAt") if isinstance(spec, dict) else None
    return decided if isinstance(decided, str) else ""


def _without_nulls(value: Any) -> Any:
    kind = type(value)  # exact types: the input is model_dump's JSON, and this runs on every report
    if kind is dict:
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if kind is list:
        return [_without_nulls(item) for item in value]
    return value


def _merge_patch(value: Any) -> Any:
    """Objects keep their nulls (a merge patch deletes those keys); lists are replaced whole, so
    their items carry no nulls."""
    kind = type(value)
    if kind is dict:
        return {key: _merge_patch(item) for key, item in value.items()}
    if kind is list:
        return [_without_nulls(item) for item in value]
    return value


def status_patch(status: NodeProxyHealthStatus) -> dict[str, Any]:
    """A merge patch that replaces the whole status: what is absent now is removed, not kept stale."""
    body = status.model_dump(mode="json", by_alias=True)
    names = sorted(set(REPORTED_SYSCTLS) | set(status.sysctls))
    body["sysctls"] = {name: status.sysctls.get(name) for name in names}
    return {"status": _merge_patch(body)}


def _retry_wait(exc: BaseException, attempt: int) -> float:
    """Capped, jittered exponential backoff, or longer when the server asked (Retry-After)."""
    return retry_delay(exc, random.uniform(0, min(BACKOFF_CAP, 0.5 * 2**attempt)))


class AgentRunner:
    def __init__(self, client: KubeClient, agent: NodeAgent, metrics: AgentMetrics | None = None) -> None:
        self.client = client
        self.agent = agent
        if agent.live_now is None:
            # Before any flush, ask the API which backends answer now: an intent may be old.
            agent.live_now = self.backends_in_use
        self.metrics = metrics or AgentMetrics()
        self._report_now = asyncio.Event()
        self._finding_types: set[str] = set()
        self._node_addresses: tuple[str, ...] = ()
        self._scopes: dict[str, SensingScope | None] = {}
        self._rereads: dict[str, asyncio.Task[None]] = {}
        """Intents whose EndpointSlice read failed, being read again (by the agent's key)."""
        self.writes = 0
        self.rounds = 0
        """Sensing rounds finished, whether or not they wrote a report (a wait for a fresh look)."""

    @property
    def node(self) -> str:
        return self.agent.node_name

    async def run(self, stop: asyncio.Event) -> None:
        await self._retrying("create NodeProxyHealth", self._ensure_object, stop)
        await self._retrying("read node labels", self._load_labels, stop)
        tasks = [
            asyncio.create_task(self._watch_intents(stop), name=f"intents:{self.node}"),
            asyncio.create_task(self._watch_policies(stop), name=f"policies:{self.node}"),
            asyncio.create_task(self._report_loop(stop), name=f"report:{self.node}"),
        ]
        try:
            await stop.wait()
        finally:
            tasks += self._rereads.values()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _retrying(self, what: str, step: Any, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                await step()
                return
            except TRANSIENT as exc:
                attempt += 1
                delay = _retry_wait(exc, attempt)
                logger.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _ensure_object(self) -> None:
        node_obj: dict[str, Any] | None
        try:
            node_obj = await self.client.get(NODES, self.node)
        except NotFoundError:
            node_obj = None
        metadata: dict[str, Any] = {"name": self.node}
        if node_obj is not None:
            # Owned by the Node: the garbage collector deletes the report with the node.
            metadata["ownerReferences"] = [
                {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": node_obj["metadata"]["uid"]}
            ]
        body = {
            "apiVersion": NODE_HEALTHS.api_version,
            "kind": "NodeProxyHealth",
            "metadata": metadata,
            "spec": {"nodeName": self.node},
        }
        with contextlib.suppress(ConflictError):
            await self.client.create(NODE_HEALTHS, body)

    async def _load_labels(self) -> None:
        try:
            node_obj = await self.client.get(NODES, self.node)
        except NotFoundError:
            return
        self.agent.node_labels = dict(node_obj.get("metadata", {}).get("labels") or {})
        self._node_addresses = node_internal_ips(node_obj)

    async def backends_in_use(self, namespace: str, service: str) -> InUse:
        """The Service's backends in use now: NodeAgent's ``live_now`` on a cluster."""
        slices, _ = await self.client.list(
            ENDPOINT_SLICES, namespace, label_selector=f"kubernetes.io/service-name={service}"
        )
        return in_use(slices)

    async def handle(self, event_type: str, obj: dict[str, Any]) -> None:
        if event_type not in ("ADDED", "MODIFIED"):
            return
        result = await self.agent.on_intent(obj)
        if result is None:
            self._read_again_later(obj)
            return
        action = str((obj.get("spec") or {}).get("action", ""))
        self.metrics.intents.labels(action, str(result.outcome)).inc()
        self.metrics.intent_seconds.observe(result.duration_seconds)
        self._report_now.set()

    def _read_again_later(self, obj: dict[str, Any]) -> None:
        """An intent the agent could not apply because the Service's EndpointSlices could not be
        read: the watch will not deliver it again, so read again, backing off (longer when the API
        server says so), until it is applied or no longer wanted (expired)."""
        key = intent_key(obj)
        if key is None or key not in self.agent.unread or key in self._rereads:
            return
        self._rereads[key] = asyncio.create_task(self._read_again(key, obj), name=f"reread:{key}")

    async def _read_again(self, key: str, obj: dict[str, Any]) -> None:
        try:
            attempt = 0
            while (error := self.agent.unread.get(key)) is not None:
                attempt += 1
                await asyncio.sleep(_retry_wait(error, attempt))
                await self.handle("MODIFIED", obj)
        finally:
            self._rereads.pop(key, None)

    async def _watch_intents(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                items, version = await self.client.list(INTENTS)
                # On start and after every relist: re-apply whatever is unexpired and addressed here.
                for item in sorted(items, key=_decided_at):
                    await self.handle("ADDED", item)
                attempt = 0
                while not stop.is_set():
                    async for event in self.client.watch(INTENTS, version):
                        version = event.resource_version or version
                        await self.handle(event.type, event.object)
            except GoneError:
                continue
            except TRANSIENT as exc:
                attempt += 1
                delay = _retry_wait(exc, attempt)
                logger.warning("watching intents failed (%s); retrying in %.1f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    def _rescope(self) -> None:
        """Look up what the policies list from the next round on. Not at once: every agent of the
        cluster reads the same policy change, and their rounds, spread in time, spread the writes."""
        sense = self.agent.settings.sense
        keys = sensing_keys(self._scopes.values(), self._node_addresses)
        if keys != sense.virtual_servers:
            logger.info(
                "sensing %s",
                "the whole IPVS table" if keys is None else f"{len(keys)} virtual servers the policies list",
            )
            sense.virtual_servers = keys

    def policies_listed(self, items: list[Any]) -> None:
        """A list of every policy: the lists their status holds replace what was known."""
        self._scopes = {str((item.get("metadata") or {}).get("name")): policy_scope(item) for item in items}
        self._rescope()

    def policy_event(self, event_type: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        if event_type == "DELETED":
            self._scopes.pop(name, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self._scopes[name] = policy_scope(obj)
        self._rescope()

    async def _watch_policies(self, stop: asyncio.Event) -> None:
        """Follow every policy's ``status.sensing``; until they are read, the agent dumps its table."""
        attempt = 0
        while not stop.is_set():
            try:
                items, version = await self.client.list(POLICIES)
                self.policies_listed(items)
                attempt = 0
                while not stop.is_set():
                    async for event in self.client.watch(POLICIES, version):
                        version = event.resource_version or version
                        self.policy_event(event.type, event.object)
            except GoneError:
                continue
            except TRANSIENT as exc:
                attempt += 1
                delay = _retry_wait(exc, attempt)
                logger.warning("watching policies failed (%s); retrying in %.1f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _report_loop(self, stop: asyncio.Event) -> None:
        settings = self.agent.settings
        while not stop.is_set():
            wait = settings.sense_interval
            try:
                await self.report()
            except TRANSIENT as exc:
                self.metrics.api_errors.inc()
                logger.warning("reporting NodeProxyHealth failed: %s", exc)
                # A throttled server said when to come back: no write before then, results included.
                if (backoff := retry_delay(exc, 0.0)) > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), backoff)
                    wait = max(0.0, wait - backoff)
            except Exception:  # the agent keeps running whatever one round hits
                logger.exception("sensing or reporting failed unexpectedly")
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._report_now.wait(), wait)
            if self._report_now.is_set():
                # Let results of intents arriving together share one write.
                await asyncio.sleep(settings.min_write_interval)
                self._report_now.clear()

    async def report(self) -> bool:
        """Sense, and write the status if it changed materially or the heartbeat is due."""
        status = await self.agent.observe()
        now = self.agent.dataplane.clock()
        for freshness in ("Fresh", "Stale", "Unknown"):
            self.metrics.kube_proxy_fresh.labels(freshness).set(
                1 if status.kube_proxy.freshness == freshness else 0
            )
        for finding in {str(f.type) for f in status.findings} | set(self._finding_types):
            self.metrics.findings.labels(finding).set(sum(1 for f in status.findings if f.type == finding))
        self._finding_types = {str(f.type) for f in status.findings}
        if not self.agent.due(status, now):
            return False
        try:
            await self.client.patch(NODE_HEALTHS, self.node, status_patch(status), subresource="status")
        except NotFoundError:
            await self._ensure_object()
            await self.client.patch(NODE_HEALTHS, self.node, status_patch(status), subresource="status")
        self.agent.written(status, now)
        self.writes += 1
        self.metrics.status_writes.inc()
        self.metrics.last_report.set(now)
        return True
