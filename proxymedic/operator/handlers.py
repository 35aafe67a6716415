"""Kopf wiring: thin handlers that feed the controller, and the operator's run function.

Only event handlers and a timer are used. Event handlers store nothing on the objects they
watch, so Services, EndpointSlices, Nodes and Pods stay untouched (docs/architecture.md, "The
contract"). The timer runs on ProxyHealthPolicy objects: Kopf pauses it on an operator that is
not the active peer, and its finalizer lives on ProxyMedic's own kind only.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

from proxymedic.api.meta import API_VERSION, GROUP, VERSION
from proxymedic.kube.client import Connection, KubeClient
from proxymedic.kube.events import EventRecorder
from proxymedic.operator.controller import Controller, ControllerSettings
from proxymedic.operator.metrics import OperatorMetrics
from proxymedic.operator.repairs import NodeRepairs
from proxymedic.operator.sysctl_notices import SysctlGapNotices

logger = logging.getLogger("proxymedic.operator")

FINALIZER = "proxymedic.io/operator"
LoginFn = Callable[..., Awaitable[kopf.ConnectionInfo | None] | kopf.ConnectionInfo | None]


@dataclass
class OperatorOptions:
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    housekeeping_interval: float = 5.0
    """Seconds between sweeps: findings age, intents expire, statuses are written."""
    watch_server_timeout: int = 300
    """Ask the API server to end each watch after this long; Kopf then re-establishes it.
    Without a timeout a watch that silently died would blind the operator (kopf#585, kopf#847)."""
    watch_client_timeout: int = 330
    peering_name: str = "proxymedic"
    standalone: bool = False
    """No peering: for a single operator in tests and the demo. Production runs with peering."""
    priority: int = 0
    liveness_endpoint: str | None = None
    instance: str = field(default_factory=socket.gethostname)


EVENT_ONLY_KINDS = frozenset(
    {
        ("v1", "Service"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
        ("v1", "Node"),
        (API_VERSION, "RemediationIntent"),
        (API_VERSION, "NodeProxyHealth"),
    }
)
"""The kinds ProxyMedic watches with event handlers only: no timer, daemon, index or change handler."""


class EventOnlyMemories(ResourceMemories):
    """Kopf's per-object memories, kept only for the kinds that need them.

    Kopf remembers every object it has seen, for the whole life of the object: a memo, error
    throttler, indexing and daemon state (about 850 bytes; 18 MiB for the 22,000 objects of the
    footprint benchmark). Event handlers use none of it: an object of an event-only kind gets a
    fresh memory for each event, as Kopf gives admission webhooks. ProxyHealthPolicy objects (the
    housekeeping timer's) and anything unrecognised keep theirs.
    """

    async def recall(
        self,
        raw_body: kopf.RawBody,
        *,
        memobase: Any = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        kind = (raw_body.get("apiVersion"), raw_body.get("kind"))
        return await super().recall(
            raw_body,
            memobase=memobase,
            noticed_by_listing=noticed_by_listing,
            ephemeral=ephemeral or kind in EVENT_ONLY_KINDS,
        )


def kopf_login_from_kubeconfig(path: str) -> LoginFn:
    """A Kopf login from an explicit kubeconfig file (Kopf's own login reads only the default one)."""

    def login(**_: Any) -> kopf.ConnectionInfo:
        import kubernetes.client
        import kubernetes.config

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, client_configuration=configuration
        )
        header = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
        return kopf.ConnectionInfo(
            server=configuration.host,
            ca_path=configuration.ssl_ca_cert,
            insecure=not configuration.verify_ssl,
            certificate_path=configuration.cert_file,
            private_key_path=configuration.key_file,
            scheme="Bearer" if header else None,
            token=str(header).removeprefix("Bearer ").strip() if header else None,
        )

    return login


def register(
    registry: kopf.OperatorRegistry, controller: Controller, options: OperatorOptions
) -> NodeRepairs:
    repairs = NodeRepairs.of(controller)
    sysctl_gaps = SysctlGapNotices(controller.cluster, controller.recorder, controller.now)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.watching.server_timeout = options.watch_server_timeout
        settings.watching.client_timeout = options.watch_client_timeout
        settings.watching.connect_timeout = 10
        # List in pages of 500 (client-go's default): a whole list of 10,000 EndpointSlices parsed
        # at once raised the operator's memory by about 100 MB, which it kept.
        settings.watching.chunk_size = 500
        settings.posting.enabled = False  # ProxyMedic posts its own Events, one per decision
        # Kopf keeps a worker (a task and a queue) per object for idle_timeout after its last event;
        # with tens of thousands of Services and EndpointSlices listed at start, 5 s of idle workers
        # held most of the operator's memory. The handlers store nothing, so a short idle is harmless.
        settings.queueing.idle_timeout = 0.5
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=GROUP, key="last-handled-configuration"
        )

    @kopf.on.startup(registry=registry)
    async def restore_history(**_: Any) -> None:
        # Before any watch delivers a policy: its entry starts with the restarts of the last hour.
        await controller.restore_history(controller.recorder.component)

    @kopf.on.event(GROUP, VERSION, "proxyhealthpolicies", registry=registry)
    async def policy_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        await controller.policy_event(type, dict(body))

    # Every handler is a coroutine: Kopf runs plain functions in a thread pool, and the
    # controller's state belongs to the event loop.
    @kopf.on.event("", "v1", "services", registry=registry)
    async def service_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.service_event(type, dict(body))

    @kopf.on.event("discovery.k8s.io", "v1", "endpointslices", registry=registry)
    async def slice_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.slice_event(type, dict(body))

    @kopf.on.event("", "v1", "nodes", registry=registry)
    async def node_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        controller.cluster.set_node(dict(body), deleted=type == "DELETED")

    @kopf.on.event(GROUP, VERSION, "remediationintents", registry=registry)
    async def intent_event(type: str | None, body: kopf.Body, **_: Any) -> None:
        await controller.intent_event(type, dict(body))

    @kopf.on.event(GROUP, VERSION, "nodeproxyhealths", registry=registry)
    async def health_event(type: str | None, body: kopf.Body, name: str, **_: Any) -> None:
        if await controller.accept_report(name, None if type == "DELETED" else dict(body)):
            await repairs.on_report(name)
        await sysctl_gaps.check(name)

    # A failed sweep (the API server erring) is retried at the next interval, not after Kopf's
    # default minute: the sweep is what ages findings, expires intents and writes statuses.
    @kopf.timer(
        GROUP,
        VERSION,
        "proxyhealthpolicies",
        interval=options.housekeeping_interval,
        backoff=options.housekeeping_interval,
        registry=registry,
    )
    async def housekeeping(name: str, **_: Any) -> None:
        controller.cluster.prune_history(controller.now())
        repairs.settle_restarts()  # else a finished restart counts against maxConcurrent forever
        await controller.expire_intents()
        entry = controller.cluster.policies.get(name)
        if entry is None:
            controller.sweeps_completed[name] += 1
            return
        await repairs.policy_nodes(name, entry)
        await sysctl_gaps.sweep()
        await controller.status.write(name, entry)
        controller.sweeps_completed[name] += 1

    return repairs


async def run_operator(
    connection: Connection,
    login: LoginFn,
    options: OperatorOptions | None = None,
    *,
    stop: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    metrics: OperatorMetrics | None = None,
    controller_ready: Callable[[Controller], None] | None = None,
) -> None:
    """Run the operator until ``stop`` is set (or forever)."""
    options = options or OperatorOptions()
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login)
    async with KubeClient(connection) as client:
        recorder = EventRecorder(client, component="proxymedic-operator", instance=options.instance)
        controller = Controller(client, recorder, metrics, options.controller)
        register(registry, controller, options)
        if controller_ready is not None:
            controller_ready(controller)
        try:
            await kopf.operator(
                registry=registry,
                clusterwide=True,
                standalone=options.standalone,
                # A peering name makes the peering CRD mandatory: only when peering is wanted.
                peering_name=None if options.standalone else options.peering_name,
                priority=options.priority,
                liveness_endpoint=options.liveness_endpoint,
                stop_flag=stop,
                ready_flag=ready,
                memories=EventOnlyMemories(),
            )
        finally:
            await controller.close()
