"""Post Kubernetes Events: what a user reads with ``kubectl get events``.

Repeats of the same (object, reason, message) within ten minutes update one Event's count,
as client-go's correlator does, so a flapping condition cannot flood the API server.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp

from proxymedic.api.reasons import EventKind
from proxymedic.kube.client import ApiError, JsonObject, KubeClient, with_backoff
from proxymedic.kube.resources import EVENTS

logger = logging.getLogger("proxymedic.events")

CLUSTER_SCOPED_EVENT_NAMESPACE = "default"
AGGREGATION_WINDOW = timedelta(minutes=10)
FORGET_EVERY = timedelta(minutes=1)
"""How often Events older than the aggregation window are forgotten (they are never matched)."""
MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None

    @classmethod
    def of(cls, obj: JsonObject) -> ObjectRef:
        meta = obj.get("metadata", {})
        return cls(
            api_version=str(obj.get("apiVersion", "v1")),
            kind=str(obj.get("kind", "")),
            name=str(meta.get("name", "")),
            namespace=meta.get("namespace"),
            uid=meta.get("uid"),
        )

    def to_api(self) -> JsonObject:
        ref: JsonObject = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            ref["namespace"] = self.namespace
        if self.uid:
            ref["uid"] = self.uid
        return ref


@dataclass
class _Posted:
    name: str
    namespace: str
    count: int
    last: datetime


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(self, client: KubeClient, component: str, instance: str) -> None:
        self._client = client
        self._component = component
        self._instance = instance
        self._posted: dict[tuple[str, str, str, str], _Posted] = {}
        self._forgotten_at: datetime | None = None

    @property
    def component(self) -> str:
        return self._component

    async def post(
        self,
        about: ObjectRef,
        reason: str,
        message: str,
        event_type: EventKind = EventKind.NORMAL,
        *,
        now: datetime | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """Create an Event, or bump the count of the same one posted in the last ten minutes.

        ``annotations`` carry a structured record of what the Event reports, for programs that
        read it back (the operator's restart record, ``operator/record.py``)."""
        now = now or datetime.now(UTC)
        message = message if len(message) <= MESSAGE_LIMIT else message[: MESSAGE_LIMIT - 1] + "…"
        key = (about.uid or f"{about.kind}/{about.namespace}/{about.name}", reason, message, str(event_type))
        seen = self._posted.get(key)
        if seen is not None and now - seen.last < AGGREGATION_WINDOW:
            try:
                patched = await self._client.patch(
                    EVENTS,
                    seen.name,
                    {"count": seen.count + 1, "lastTimestamp": _timestamp(now)},
                    seen.namespace,
                )
            except ApiError:
                pass  # the Event expired or was deleted: post a new one
            else:
                seen.count += 1
                seen.last = now
                return patched
        namespace = about.namespace or CLUSTER_SCOPED_EVENT_NAMESPACE
        name = f"{about.name}.{secrets.token_hex(8)}"
        event: JsonObject = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": name,
                "namespace": namespace,
                **({"annotations": dict(annotations)} if annotations else {}),
            },
            "involvedObject": about.to_api(),
            "reason": reason,
            "message": message,
            "type": str(event_type),
            "count": 1,
            "firstTimestamp": _timestamp(now),
            "lastTimestamp": _timestamp(now),
            "source": {"component": self._component},
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
        }
        if annotations:
            event["metadata"]["annotations"] = dict(annotations)
        try:
            # An Event reports a decision already taken: retried when the API server is throttled
            # or failing, and never allowed to abort (and so repeat) the decision it reports.
            created = await with_backoff(lambda: self._client.create(EVENTS, event, namespace))
        except (ApiError, aiohttp.ClientError, TimeoutError) as exc:
            logger.warning("cannot post Event %s %s on %s: %s", reason, message[:200], about.name, exc)
            return event
        self._posted[key] = _Posted(name=name, namespace=namespace, count=1, last=now)
        if self._forgotten_at is None or now - self._forgotten_at >= FORGET_EVERY:
            # Not on every post: with an Event per node, a walk over every Event posted on each post
            # made a sweep over thousands of nodes quadratic.
            self._forgotten_at = now
            self._forget_older_than(now - AGGREGATION_WINDOW)
        return created

    def _forget_older_than(self, horizon: datetime) -> None:
        for key in [key for key, posted in self._posted.items() if posted.last < horizon]:
            del self._posted[key]
