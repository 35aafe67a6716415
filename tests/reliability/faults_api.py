"""API faults injected on the emulator's real HTTP path, counted so a test can report them.

Each fault is a kmock reaction placed before the object store: it answers a matching request
with the fault while its budget lasts, and lets every other request fall through to the store.
The operator (Kopf) and the agents (``proxymedic.kube.client``) meet them exactly as they would
meet a misbehaving API server.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import kmock

from proxymedic.emulator import errors
from proxymedic.emulator.server import KubernetesApiEmulator
from proxymedic.kube.resources import Resource

Match = Callable[[kmock.Request], bool]
Response: Any = kmock.Response  # type: ignore[attr-defined]  # exported at runtime, not in __all__


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


@dataclass
class Fault:
    """One kind of fault on one kind of request: answers at most ``budget`` requests."""

    name: str
    budget: int
    injected: int = 0
    seen: list[tuple[float, str]] = field(default_factory=list)
    """When (monotonic seconds) the fault was injected, and on which object name."""

    def take(self, request: kmock.Request) -> bool:
        if self.injected >= self.budget:
            return False
        self.injected += 1
        self.seen.append((time.monotonic(), str(request.name or "")))
        return True

    @property
    def spent(self) -> bool:
        return self.injected >= self.budget


def _kube(resource: Resource) -> Any:
    group, _, version = resource.api_version.rpartition("/")
    return kmock.resource(group, version, resource.plural)


class Faults:
    """Faults on one emulator; ``injected`` counts them by name for the figures."""

    def __init__(self, emulator: KubernetesApiEmulator) -> None:
        self.emulator = emulator
        self.faults: list[Fault] = []

    @property
    def injected(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fault in self.faults:
            counts[fault.name] = counts.get(fault.name, 0) + fault.injected
        return counts

    @property
    def total(self) -> int:
        return sum(fault.injected for fault in self.faults)

    def spent(self) -> bool:
        return all(fault.spent for fault in self.faults)

    def _react(
        self,
        name: str,
        verb: str,
        resource: Resource,
        budget: int,
        answer: Callable[[kmock.Request], Any],
        match: Match | None = None,
    ) -> Fault:
        fault = Fault(name, budget)
        self.faults.append(fault)

        def react(request: kmock.Request) -> Any:
            if match is not None and not match(request):
                return NotImplemented
            if not fault.take(request):
                return NotImplemented
            return answer(request)

        self.emulator[verb, _kube(resource)] << react
        return fault

    # --- the faults ----------------------------------------------------------------------

    def error(
        self, verb: str, resource: Resource, code: int, budget: int, *, match: Match | None = None
    ) -> Fault:
        """Answer ``code`` (500, 503, …) instead of serving the request."""
        body = _status(code, "InternalError", f"injected {code}")
        return self._react(
            f"{code} on {verb} {resource.plural}",
            verb,
            resource,
            budget,
            lambda _: Response(status=code, payload=body),
            match,
        )

    def throttle(
        self, verb: str, resource: Resource, budget: int, retry_after: int = 1, *, match: Match | None = None
    ) -> Fault:
        """429 Too Many Requests with a Retry-After header, as API Priority and Fairness answers."""
        body = _status(429, "TooManyRequests", "the server has received too many requests")
        body["details"] = {"retryAfterSeconds": retry_after}
        return self._react(
            f"429 on {verb} {resource.plural}",
            verb,
            resource,
            budget,
            lambda _: Response(status=429, headers={"Retry-After": str(retry_after)}, payload=body),
            match,
        )

    def slow(
        self, verb: str, resource: Resource, budget: int, delay: float, *, match: Match | None = None
    ) -> Fault:
        """Serve the request from the store, ``delay`` seconds late."""
        emulator = self.emulator

        async def late(request: kmock.Request) -> Any:
            await asyncio.sleep(delay)
            # Answered here rather than passed on: kmock forgets requests in long runs
            # (keep_requests=False), so one passed on after an await would match nothing.
            if verb == "post":
                return Response(status=201, payload=emulator._serve_post(request))
            serve = {"patch": emulator._serve_patch, "delete": emulator._serve_delete}.get(verb)
            return (serve or emulator._serve_get)(request)

        return self._react(f"slow {verb} {resource.plural}", verb, resource, budget, late, match)

    def gone(self, resource: Resource, budget: int) -> Fault:
        """A watch that answers 410 Gone at once: the client must list again."""
        event = {"type": "ERROR", "object": errors.gone_status("too old resource version (injected)")}
        return self._react(f"410 on watch {resource.plural}", "watch", resource, budget, lambda _: (event,))

    def cut_watch(self, resource: Resource, budget: int, after: int = 1) -> Fault:
        """Serve the real watch, and cut the connection in the middle of event ``after + 1``."""
        emulator = self.emulator

        def answer(request: kmock.Request) -> Any:
            return _cut_stream(emulator, request, after)

        return self._react(f"watch cut mid-event {resource.plural}", "watch", resource, budget, answer)

    def stale_list(self, resource: Resource, snapshot: dict[str, Any], budget: int) -> Fault:
        """Answer a list with an old snapshot (old items, old resourceVersion), as a lagging cache does."""
        return self._react(
            f"stale list {resource.plural}",
            "list",
            resource,
            budget,
            lambda _: json.loads(json.dumps(snapshot)),
        )

    def snapshot(self, resource: Resource) -> dict[str, Any]:
        """The list a client would get now, to serve later as a stale one."""
        group, _, version = resource.api_version.rpartition("/")
        spec = self.emulator.spec(resource.api_version, resource.plural)
        items = [json.loads(json.dumps(obj)) for obj in self.emulator.store.select(spec, _everything())]
        del group, version
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": {"resourceVersion": str(self.emulator.store.revision)},
            "items": items,
        }


def _everything() -> Any:
    from proxymedic.emulator.selectors import Selection

    return Selection(namespace=None)


async def _cut_stream(
    emulator: KubernetesApiEmulator, request: kmock.Request, after: int
) -> AsyncIterator[Any]:
    """The store's watch stream for ``after`` events, then half of the next one, then a dropped connection."""
    served = 0
    stream = emulator._serve_watch(request)
    try:
        async for item in stream:
            if not isinstance(item, dict):
                yield item
                continue
            if served >= after:
                line = json.dumps(item).encode()
                yield line[: len(line) // 2]
                raw = request._raw_request
                if raw is not None and raw.transport is not None:
                    raw.transport.abort()  # no final chunk: the client sees a broken transfer
                return
            served += 1
            yield item
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
