"""The stateful object store: versions, identity, optimistic concurrency, finalizers, history.

Every method is synchronous and runs on the server's event loop, so each write is atomic
without locks. Watchers receive committed events through asyncio queues.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
import datetime
import json
import random
import re
import uuid
from typing import Any, Literal

from proxymedic.emulator import admission, errors, patching
from proxymedic.emulator.resources import JsonDict, ResourceSpec
from proxymedic.emulator.selectors import Selection

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
SpecKey = tuple[str, str, str]
ObjectKey = tuple[str, str]  # (namespace or "", name)

# Fields the server owns; clients cannot change them with an update or a patch.
_SERVER_OWNED_METADATA = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "name",
    "namespace",
)
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DNS_SUBDOMAIN_PATTERN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_SUBDOMAIN = re.compile(_DNS_SUBDOMAIN_PATTERN)


def _invalid_name_message(name: object) -> str:
    return (
        f"Invalid value: {json.dumps(name)}: a lowercase RFC 1123 subdomain must consist of lower case "
        "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character "
        f"(e.g. 'example.com', regex used for validation is '{_DNS_SUBDOMAIN_PATTERN}')"
    )


class ResourceVersionTooOldError(Exception):
    """The requested version is older than the kept history (the server answers 410 Gone)."""


@dataclasses.dataclass(frozen=True)
class WatchEvent:
    revision: int
    spec_key: SpecKey
    type: EventType
    object: JsonDict
    old: JsonDict | None  # the previous state, to turn MODIFIED into ADDED/DELETED for selectors


@dataclasses.dataclass(eq=False)
class Subscription:
    spec_key: SpecKey
    queue: asyncio.Queue[WatchEvent | None] = dataclasses.field(default_factory=asyncio.Queue)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without(obj: JsonDict, *keys: str) -> JsonDict:
    return {key: value for key, value in obj.items() if key not in keys}


class ObjectStore:
    """All objects of all registered resources, with a global revision counter."""

    def __init__(self, *, history_size: int = 1000) -> None:
        self.history_size = history_size
        self._objects: dict[SpecKey, dict[ObjectKey, JsonDict]] = collections.defaultdict(dict)
        self._revision = 0
        self._history: collections.deque[WatchEvent] = collections.deque()
        self._horizon = 0  # every event newer than this revision is still in the history
        self._subscriptions: set[Subscription] = set()

    @property
    def revision(self) -> int:
        return self._revision

    # Reading.

    def get(self, spec: ResourceSpec, namespace: str | None, name: str) -> JsonDict:
        obj = self._objects[spec.key].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(spec, name)
        return obj

    def exists(self, spec: ResourceSpec, namespace: str | None, name: str) -> bool:
        return (namespace or "", name) in self._objects[spec.key]

    def select(self, spec: ResourceSpec, selection: Selection) -> list[JsonDict]:
        bucket = self._objects[spec.key]
        return [bucket[key] for key in sorted(bucket) if selection.matches(bucket[key])]

    def select_page(
        self, spec: ResourceSpec, selection: Selection, *, after: ObjectKey | None, limit: int
    ) -> tuple[list[JsonDict], ObjectKey | None, int]:
        """At most ``limit`` matching objects whose key sorts after ``after``.

        Returns them, the key to continue after (None when nothing is left) and how many
        matching objects remain beyond this page (the list's ``remainingItemCount``).
        """
        bucket = self._objects[spec.key]
        keys = [
            key for key in sorted(bucket) if (after is None or key > after) and selection.matches(bucket[key])
        ]
        page = keys[:limit]
        remaining = len(keys) - len(page)
        return [bucket[key] for key in page], (page[-1] if remaining else None), remaining

    def is_expired(self, revision: int) -> bool:
        """Whether changes since ``revision`` are no longer all in the history (410 Gone)."""
        return revision < self._horizon

    # Writing.

    def create(self, spec: ResourceSpec, namespace: str | None, body: JsonDict) -> JsonDict:
        obj = copy.deepcopy(body)
        metadata: JsonDict = obj.setdefault("metadata", {})
        if spec.namespaced:
            if metadata.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name") and metadata.get("generateName"):
            suffix = "".join(random.choices(_GENERATE_NAME_ALPHABET, k=5))
            metadata["name"] = f"{metadata['generateName']}{suffix}"
        name = metadata.get("name")
        if not name:
            cause = errors.Cause(
                "metadata.name", "Required value: name or generateName is required", "FieldValueRequired"
            )
            raise errors.invalid(spec, "", [cause])
        if not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
            raise errors.invalid(
                spec, str(name), [errors.Cause("metadata.name", _invalid_name_message(name))]
            )
        if (namespace or "", name) in self._objects[spec.key]:
            raise errors.already_exists(spec, name)
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(key, None)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=_now(), generation=1)
        obj["apiVersion"] = spec.api_version
        obj["kind"] = spec.kind
        if spec.status_subresource:
            obj.pop("status", None)
        obj = admission.admit(spec, obj, None)
        return self._commit(spec, obj, None)

    def replace(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        body: JsonDict,
        *,
        subresource: str | None = None,
    ) -> JsonDict:
        """PUT: the body replaces the object (or only its status via /status)."""
        old = self.get(spec, namespace, name)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        body_rv = (body.get("metadata") or {}).get("resourceVersion")
        if not body_rv and not spec.unconditional_update and subresource is None:
            cause = errors.Cause(
                "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update"
            )
            raise errors.invalid(spec, name, [cause])
        return self._update(spec, old, copy.deepcopy(body), subresource=subresource)

    def patch(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
    ) -> JsonDict:
        old = self.get(spec, namespace, name)
        try:
            candidate = copy.deepcopy(patching.apply_patch(old, patch, content_type))
        except patching.PatchError as exc:
            raise errors.unprocessable(spec, name, str(exc)) from exc
        return self._update(spec, old, candidate, subresource=subresource)

    def delete(
        self, spec: ResourceSpec, namespace: str | None, name: str, options: JsonDict | None = None
    ) -> JsonDict:
        """Delete now, or mark for deletion while finalizers remain (the object is returned)."""
        old = self.get(spec, namespace, name)
        preconditions = (options or {}).get("preconditions") or {}
        expected_rv = preconditions.get("resourceVersion")
        if expected_rv and expected_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(spec, name)
        expected_uid = preconditions.get("uid")
        if expected_uid and expected_uid != old["metadata"]["uid"]:
            raise errors.conflict(spec, name)
        if old["metadata"].get("finalizers"):
            if old["metadata"].get("deletionTimestamp"):
                return old
            obj = copy.deepcopy(old)
            obj["metadata"].update(deletionTimestamp=_now(), deletionGracePeriodSeconds=0)
            return self._commit(spec, obj, old)
        return self._remove(spec, old)

    def delete_collection(self, spec: ResourceSpec, selection: Selection) -> list[JsonDict]:
        return [
            self.delete(spec, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            for obj in self.select(spec, selection)
        ]

    def _update(
        self, spec: ResourceSpec, old: JsonDict, candidate: JsonDict, *, subresource: str | None
    ) -> JsonDict:
        name = old["metadata"]["name"]
        if not isinstance(candidate.get("metadata"), dict):
            candidate["metadata"] = {}
        requested_rv = candidate["metadata"].get("resourceVersion")
        if requested_rv and requested_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(spec, name)

        if subresource == "status":
            obj = copy.deepcopy(old)
            if "status" in candidate:
                obj["status"] = candidate["status"]
            else:
                obj.pop("status", None)
        elif subresource is None:
            obj = candidate
            for key in _SERVER_OWNED_METADATA:
                if key in old["metadata"]:
                    obj["metadata"][key] = old["metadata"][key]
                else:
                    obj["metadata"].pop(key, None)
            obj["apiVersion"] = spec.api_version
            obj["kind"] = spec.kind
            if spec.status_subresource:
                if "status" in old:
                    obj["status"] = old["status"]
                else:
                    obj.pop("status", None)
        else:
            raise errors.not_found(spec, name)

        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        obj = admission.admit(spec, obj, old)
        if _without(obj, "metadata", "status") != _without(old, "metadata", "status"):
            obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1

        if obj == old:  # a no-op write changes nothing and notifies nobody, as on a real server
            return old
        committed = self._commit(spec, obj, old)
        if committed["metadata"].get("deletionTimestamp") and not committed["metadata"].get("finalizers"):
            self._remove(spec, committed)
        return committed

    def _commit(self, spec: ResourceSpec, obj: JsonDict, old: JsonDict | None) -> JsonDict:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        key = (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        self._objects[spec.key][key] = obj
        self._publish(WatchEvent(self._revision, spec.key, "ADDED" if old is None else "MODIFIED", obj, old))
        return obj

    def _remove(self, spec: ResourceSpec, old: JsonDict) -> JsonDict:
        self._revision += 1
        obj = copy.deepcopy(old)
        obj["metadata"]["resourceVersion"] = str(self._revision)
        del self._objects[spec.key][(obj["metadata"].get("namespace") or "", obj["metadata"]["name"])]
        self._publish(WatchEvent(self._revision, spec.key, "DELETED", obj, old))
        return obj

    def forget_resource(self, spec: ResourceSpec) -> None:
        """Drop all objects of a resource that is no longer served (without watch events)."""
        self._objects.pop(spec.key, None)

    # Watching.

    def _publish(self, event: WatchEvent) -> None:
        self._history.append(event)
        while len(self._history) > self.history_size:
            self._horizon = self._history.popleft().revision
        for subscription in self._subscriptions:
            if subscription.spec_key == event.spec_key:
                subscription.queue.put_nowait(event)

    def subscribe(self, spec: ResourceSpec, since: int | None) -> tuple[list[WatchEvent], Subscription]:
        """Events to replay (current state as ADDED if ``since`` is None) and a live subscription.

        Both are taken at once, so no event falls between the replay and the live stream.
        """
        if since is None:
            bucket = self._objects[spec.key]
            replay = [
                WatchEvent(self._revision, spec.key, "ADDED", bucket[key], None) for key in sorted(bucket)
            ]
        elif since < self._horizon:
            raise ResourceVersionTooOldError(since)
        else:
            replay = [
                event for event in self._history if event.revision > since and event.spec_key == spec.key
            ]
        subscription = Subscription(spec.key)
        self._subscriptions.add(subscription)
        return replay, subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def compact_history(self) -> None:
        """Forget all past events: watches resuming from an older version get 410 Gone."""
        self._history.clear()
        self._horizon = self._revision

    def drop_watches(self) -> None:
        """End every open watch stream, as when an API server restarts or a proxy cuts connections."""
        for subscription in list(self._subscriptions):
            subscription.queue.put_nowait(None)
        self._subscriptions.clear()

    @property
    def watch_count(self) -> int:
        return len(self._subscriptions)
