"""Watch streams: replay from history, live events, selectors, bookmarks, timeouts, 410 Gone."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

from proxymedic.emulator import errors
from proxymedic.emulator.resources import JsonDict, ResourceSpec
from proxymedic.emulator.selectors import Selection
from proxymedic.emulator.store import ObjectStore, ResourceVersionTooOldError, WatchEvent

# How often an idle stream checks whether its client has gone away, unless told otherwise.
_IDLE_POLL_SECONDS = 0.5


@dataclasses.dataclass(frozen=True)
class WatchRequest:
    spec: ResourceSpec
    selection: Selection
    since: int | None  # None: start with the current state as synthetic ADDED events
    bookmarks: bool = False
    timeout: float | None = None


def parse_resource_version(value: str | None) -> int | None:
    """``""``, absent and ``"0"`` all mean "the current state, then changes"; otherwise a revision."""
    if not value or value == "0":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"invalid resource version: {value!r}") from None


def visible_event(event: WatchEvent, selection: Selection) -> JsonDict | None:
    """The event as this watcher sees it: objects entering or leaving a selection are added/deleted."""
    now = selection.matches(event.object)
    before = event.old is not None and selection.matches(event.old)
    if event.type == "DELETED":
        kind = "DELETED" if now or before else None
    elif now and before:
        kind = "MODIFIED"
    elif now:
        kind = "ADDED"
    elif before:
        kind = "DELETED"
    else:
        kind = None
    return None if kind is None else {"type": kind, "object": event.object}


def _bookmark(spec: ResourceSpec, revision: int) -> JsonDict:
    return {
        "type": "BOOKMARK",
        "object": {
            "apiVersion": spec.api_version,
            "kind": spec.kind,
            "metadata": {"resourceVersion": str(revision)},
        },
    }


async def stream_events(
    store: ObjectStore,
    request: WatchRequest,
    *,
    bookmark_interval: float,
    client_gone: Callable[[], bool] = lambda: False,
    idle_poll: float = _IDLE_POLL_SECONDS,
) -> AsyncIterator[JsonDict]:
    """Yield watch events until the timeout, a dropped watch, or the client going away."""
    try:
        replay, subscription = store.subscribe(request.spec, request.since)
    except ResourceVersionTooOldError:
        yield {
            "type": "ERROR",
            "object": errors.gone_status(f"too old resource version: {request.since} ({store.revision})"),
        }
        return

    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.timeout if request.timeout else None
    next_bookmark = loop.time() + bookmark_interval
    try:
        for event in replay:
            if (visible := visible_event(event, request.selection)) is not None:
                yield visible
        while True:
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if request.bookmarks and now >= next_bookmark and subscription.queue.empty():
                next_bookmark = now + bookmark_interval
                yield _bookmark(request.spec, store.revision)
                continue
            wake_at = min(
                t
                for t in (deadline, next_bookmark if request.bookmarks else None, now + idle_poll)
                if t is not None
            )
            try:
                async with asyncio.timeout_at(wake_at):
                    item = await subscription.queue.get()
            except TimeoutError:
                if client_gone():
                    return
                continue
            if item is None:  # the watch was dropped
                return
            if (visible := visible_event(item, request.selection)) is not None:
                yield visible
    finally:
        store.unsubscribe(subscription)
