"""The Kubernetes API emulator: kmock's discovery and DSL, with a real object store behind it.

Requests that no test-defined reaction catches fall through to the store. Tests inject faults
with kmock's DSL, which takes priority over the store::

    emulator['get /api/v1/pods'] << 500
    emulator['patch', kmock.resource('proxymedic.io/v1alpha1/remediationintents')][:1] << 409
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock

from proxymedic.emulator import cel_rules, errors, kmock_paths, patching
from proxymedic.emulator.resources import (
    BUILTIN_RESOURCES,
    CRD_RESOURCE,
    InvalidDefinitionError,
    JsonDict,
    ResourceSpec,
    specs_from_crd,
)
from proxymedic.emulator.selectors import Selection, SelectorError, parse_field_selector, parse_label_selector
from proxymedic.emulator.store import ObjectStore
from proxymedic.emulator.watch import WatchRequest, parse_resource_version, stream_events

_TRUE = ("true", "1")

kmock_paths.install()


def _unknown_resource() -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=404, reason="NotFound", message="the server could not find the requested resource", details={}
    )


def _encode_continue(revision: int, after: tuple[str, str]) -> str:
    raw = json.dumps({"rv": revision, "after": list(after)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = data["after"]
        return int(data["rv"]), (str(namespace), str(name))
    except (ValueError, TypeError, KeyError) as exc:
        raise errors.bad_request(f"invalid continue token: {exc}") from None


def _check_rules_compile(schema: Any) -> None:
    """Compile every CEL rule at registration, so an unusable rule is reported up front."""
    if isinstance(schema, Mapping):
        for rule in schema.get("x-kubernetes-validations", ()):
            cel_rules.compile_rule(rule["rule"])
        for value in schema.values():
            _check_rules_compile(value)
    elif isinstance(schema, list):
        for item in schema:
            _check_rules_compile(item)


def _check_defaults(specs: list[ResourceSpec]) -> None:
    """Reject a CRD whose defaults fail their own rules, as kube-apiserver does."""
    for spec in specs:
        if spec.schema is None:
            continue
        path = f"spec.validation.openAPIV3Schema ({spec.version})"
        violations = list(cel_rules.default_violations(spec.schema, path))
        if violations:
            raise InvalidDefinitionError("; ".join(violations))


@attrs.define(kw_only=True)
class KubernetesApiEmulator(kmock.KubernetesScaffold):
    """An in-memory Kubernetes API server for tests, the demo and benchmarks.

    Serve it with :func:`proxymedic.emulator.runner.serve` (async) or
    :class:`proxymedic.emulator.runner.EmulatorThread` (sync).
    """

    history_size: int = 1000
    bookmark_interval: float = 60.0
    watch_idle_poll: float = 0.5
    """How often an idle watch stream checks whether its client has gone away: with thousands of
    watches open (a benchmark's agents), each check is a wake-up of the emulator's one loop."""
    # Long runs (the demo, benchmarks) can stop kmock from keeping every request for assertions.
    keep_requests: bool = True
    store: ObjectStore = attrs.field(init=False)
    _specs: dict[tuple[str, str, str], ResourceSpec] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.store = ObjectStore(history_size=self.history_size)
        for spec in (*BUILTIN_RESOURCES, CRD_RESOURCE):
            self.register(spec)
        # Lower than any test-defined reaction, after kmock's discovery fallbacks.
        self.fallback[kmock.method.GET] << self._serve_get
        self.fallback[kmock.method.POST] << 201 << self._serve_post
        self.fallback[kmock.method.PUT] << self._serve_put
        self.fallback[kmock.method.PATCH] << self._serve_patch
        self.fallback[kmock.method.DELETE] << self._serve_delete

    async def _serve_version(self, request: Any) -> Any:
        """kmock's APIResourceList of a group version, with the core group's named ``v1``: kmock
        names it ``/v1``, and kubectl then leaves the core group out of its discovery, so that
        ``kubectl get events`` read events.k8s.io instead of the core Events everyone posts."""
        document = await super()._serve_version(request)
        if isinstance(document, dict) and str(document.get("groupVersion", "")).startswith("/"):
            return {**document, "groupVersion": str(document["groupVersion"]).removeprefix("/")}
        return document

    # Registry.

    def register(self, spec: ResourceSpec) -> None:
        self._specs[spec.key] = spec
        self.resources[kmock.resource(spec.group, spec.version, spec.plural)] = kmock.ResourceInfo(
            kind=spec.kind,
            singular=spec.singular,
            namespaced=spec.namespaced,
            verbs=set(spec.verbs),
            shortnames=set(spec.short_names),
            categories=set(spec.categories),
            subresources={"status"} if spec.status_subresource else set(),
        )

    def unregister(self, spec: ResourceSpec) -> None:
        """Stop serving a resource and forget its objects (as when its CRD is deleted)."""
        self._specs.pop(spec.key, None)
        self.resources.pop(kmock.resource(spec.group, spec.version, spec.plural), None)
        self.store.forget_resource(spec)

    def register_crd(self, crd: Mapping[str, Any]) -> list[ResourceSpec]:
        """Serve every served version of an apiextensions.k8s.io/v1 CustomResourceDefinition.

        Registering directly (rather than POSTing the CRD) does not store the CRD object itself.
        """
        specs = specs_from_crd(crd)
        for spec in specs:
            if spec.schema is not None:
                _check_rules_compile(spec.schema)
        _check_defaults(specs)
        for spec in specs:
            self.register(spec)
        return specs

    def spec(self, api_version: str, plural: str) -> ResourceSpec:
        """The registered resource, e.g. ``spec("v1", "pods")`` or ``spec("proxymedic.io/v1alpha1", ...)``."""
        group, _, version = api_version.rpartition("/")
        try:
            return self._specs[(group, version, plural)]
        except KeyError:
            raise LookupError(f"resource {plural!r} of {api_version!r} is not registered") from None

    @property
    def specs(self) -> list[ResourceSpec]:
        return list(self._specs.values())

    # Test hooks.

    def compact_history(self) -> None:
        """Forget past events, so watches resuming from an older version get 410 Gone."""
        self.store.compact_history()

    def drop_watches(self) -> None:
        """Close every open watch stream now; clients re-list or resume."""
        self.store.drop_watches()

    def forget_requests(self) -> None:
        """Drop the requests kmock keeps for assertions (memory grows with them in long runs)."""
        self._requests.clear()
        for payload in self._payloads:
            payload._requests.clear()
        for errors_of_level in self._errors:
            errors_of_level.clear()

    # Request routing.

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if not self.keep_requests:
            self.forget_requests()
            self._requests.append(request)  # kmock's filters match requests among the recorded ones
        return await super()._handle(request)

    def _target(self, request: kmock.Request, verb: str) -> ResourceSpec:
        """The resource addressed, after the checks the server does on any object URL."""
        if request.resource is None or not request.resource.plural:
            raise NotImplementedError  # not an object URL: let discovery or the 404 fallback answer
        resource = request.resource
        spec = self._specs.get((resource.group or "", resource.version or "", resource.plural or ""))
        if spec is None:
            raise _unknown_resource()
        if request.namespace is not None and not spec.namespaced:
            raise _unknown_resource()
        collection_verbs = ("list", "watch", "deletecollection")
        if spec.namespaced and request.namespace is None and verb not in collection_verbs:
            raise _unknown_resource()
        if request.subresource not in (None, "status"):
            raise _unknown_resource()
        if verb not in spec.verbs:
            raise errors.method_not_allowed(f"{verb} is not supported on {spec.group_resource}")
        return spec

    def _selection(self, spec: ResourceSpec, request: kmock.Request) -> Selection:
        params = request.params
        try:
            fields = parse_field_selector(params.get("fieldSelector"), spec.field_labels)
            labels = parse_label_selector(params.get("labelSelector"))
        except SelectorError as exc:
            raise errors.bad_request(str(exc)) from None
        return Selection(namespace=request.namespace, labels=labels, fields=fields)

    def _body(self, request: kmock.Request) -> JsonDict:
        if not isinstance(request.data, dict):
            raise errors.bad_request("the request body must be a JSON object")
        return request.data

    def _list(self, spec: ResourceSpec, items: list[JsonDict], metadata: JsonDict | None = None) -> JsonDict:
        """A list response, stamped with the store's current revision unless ``metadata`` says."""
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": metadata or {"resourceVersion": str(self.store.revision)},
            "items": items,
        }

    def _serve_list(self, spec: ResourceSpec, request: kmock.Request) -> JsonDict:
        """A list, in pages when the client sends ``limit`` (and ``continue`` for the next ones).

        Every page carries the first page's resourceVersion, as a real server's do. A real server
        reads every page from that version's snapshot; this one reads later pages from the current
        state, so an object changed between pages is listed as it is now. A watch started from the
        list's version replays that change anyway, so a client that lists then watches ends in the
        same state. A token older than the kept history is refused with 410 Expired.
        """
        selection = self._selection(spec, request)
        limit_text = request.params.get("limit")
        token = request.params.get("continue")
        if not limit_text and not token:
            return self._list(spec, self.store.select(spec, selection))
        try:
            limit = int(limit_text) if limit_text else 0
        except ValueError:
            raise errors.bad_request(f"invalid limit {limit_text!r}: must be an integer") from None
        revision, after = _decode_continue(token) if token else (self.store.revision, None)
        if self.store.is_expired(revision):
            raise errors.continue_expired()
        items, last, remaining = self.store.select_page(
            spec, selection, after=after, limit=limit if limit > 0 else sys.maxsize
        )
        metadata: JsonDict = {"resourceVersion": str(revision)}
        if last is not None:
            metadata["continue"] = _encode_continue(revision, last)
            metadata["remainingItemCount"] = remaining
        return self._list(spec, items, metadata)

    def _serve_get(self, request: kmock.Request) -> kmock.Payload:
        if request.params.get("watch", "").lower() in _TRUE:
            return self._serve_watch(request)
        if request.name is None:
            return self._serve_list(self._target(request, "list"), request)
        spec = self._target(request, "get")
        return self.store.get(spec, request.namespace, request.name)

    def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        spec = self._target(request, "watch")
        selection = self._selection(spec, request)
        if request.name is not None:  # the old per-object watch URL
            by_name = parse_field_selector(f"metadata.name={request.name}", spec.field_labels)
            selection = Selection(request.namespace, fields=by_name)
        timeout = request.params.get("timeoutSeconds")
        watch = WatchRequest(
            spec=spec,
            selection=selection,
            since=parse_resource_version(request.params.get("resourceVersion")),
            bookmarks=request.params.get("allowWatchBookmarks", "").lower() in _TRUE,
            timeout=float(timeout) if timeout else None,
        )
        raw = request._raw_request

        def client_gone() -> bool:
            return raw is not None and (raw.transport is None or raw.transport.is_closing())

        async def stream() -> AsyncIterator[Any]:
            yield b""  # send the headers now: a quiet watch is still a started watch
            async for event in stream_events(
                self.store,
                watch,
                bookmark_interval=self.bookmark_interval,
                client_gone=client_gone,
                idle_poll=self.watch_idle_poll,
            ):
                yield event

        return stream()

    def _serve_post(self, request: kmock.Request) -> kmock.Payload:
        if request.name is not None:
            raise errors.method_not_allowed("POST is supported on collections only")
        spec = self._target(request, "create")
        if spec.namespaced and request.namespace is None:
            raise _unknown_resource()
        body = self._body(request)
        if spec is CRD_RESOURCE:
            return self._create_crd(body)
        return self.store.create(spec, request.namespace, body)

    def _create_crd(self, body: JsonDict) -> JsonDict:
        try:
            _check_defaults(specs_from_crd(body))
        except InvalidDefinitionError as exc:
            name = str(body.get("metadata", {}).get("name", ""))
            raise errors.invalid(CRD_RESOURCE, name, [errors.Cause("spec", str(exc))]) from None
        created = self.store.create(CRD_RESOURCE, None, body)
        self.register_crd(created)
        names = created["spec"]["names"]
        status = {
            "acceptedNames": names,
            "storedVersions": [
                version["name"] for version in created["spec"]["versions"] if version.get("storage")
            ],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts"},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted"},
            ],
        }
        return self.store.replace(
            CRD_RESOURCE, None, created["metadata"]["name"], {"status": status}, subresource="status"
        )

    def _serve_put(self, request: kmock.Request) -> kmock.Payload:
        if request.name is None:
            raise errors.method_not_allowed("PUT is supported on objects only")
        spec = self._target(request, "update")
        return self.store.replace(
            spec, request.namespace, request.name, self._body(request), subresource=request.subresource
        )

    def _serve_patch(self, request: kmock.Request) -> kmock.Payload:
        if request.name is None:
            raise errors.method_not_allowed("PATCH is supported on objects only")
        spec = self._target(request, "patch")
        content_type = patching.media_type(request.headers.get("Content-Type"))
        if content_type not in patching.SUPPORTED_PATCH_TYPES:
            raise errors.unsupported_media_type(content_type)
        return self.store.patch(
            spec, request.namespace, request.name, request.data, content_type, subresource=request.subresource
        )

    def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        options = request.data if isinstance(request.data, dict) else None
        if request.name is None:
            spec = self._target(request, "deletecollection")
            return self._list(spec, self.store.delete_collection(spec, self._selection(spec, request)))
        spec = self._target(request, "delete")
        result = self.store.delete(spec, request.namespace, request.name, options)
        if spec is CRD_RESOURCE and not self.store.exists(spec, None, request.name):
            for served in specs_from_crd(result):
                self.unregister(served)
        return result
