"""Cases about which endpoints a node uses: readiness, terminating fallbacks, families, traffic
policies, topology hints, named and multiple ports."""

from __future__ import annotations

from tests.expectation.manifests import (
    W1,
    W2,
    W3,
    endpoint,
    endpoint_slice,
    on_every_node,
    port,
    service,
    vs,
)
from tests.expectation.matrix import Case, case, per_node

DNS_PORTS = [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]

CASES: list[Case] = [
    case(
        "multi-port-dns",
        "one virtual server per Service port, real servers from the slice port of the same name and protocol",
        [
            service(
                "dns",
                [port("dns", 53, "UDP"), port("dns-tcp", 53, "TCP"), port("metrics", 9153, "TCP")],
                ["10.96.10.1"],
            ),
            endpoint_slice("dns", "a", [endpoint("10.244.1.11", W1), endpoint("10.244.2.11", W2)], DNS_PORTS),
        ],
        on_every_node(
            vs("10.96.10.1", 53, "TCP", "10.244.1.11:53", "10.244.2.11:53"),
            vs("10.96.10.1", 53, "UDP", "10.244.1.11:53", "10.244.2.11:53"),
            vs("10.96.10.1", 9153, "TCP", "10.244.1.11:9153", "10.244.2.11:9153"),
        ),
    ),
    case(
        "not-ready-left-out",
        "only ready endpoints are used while one is ready",
        [
            service("web-not-ready", [port("http", 80, target=8080)], ["10.96.10.2"]),
            endpoint_slice(
                "web-not-ready",
                "a",
                [endpoint("10.244.1.21", W1), endpoint("10.244.2.21", W2, ready=False)],
                [("http", 8080, "TCP")],
            ),
        ],
        on_every_node(vs("10.96.10.2", 80, "TCP", "10.244.1.21:8080")),
    ),
    case(
        "terminating-fallback",
        "no ready endpoint anywhere: the serving terminating ones, never the non-serving ones",
        [
            service("web-draining", [port("http", 80, target=8080)], ["10.96.10.3"]),
            endpoint_slice(
                "web-draining",
                "a",
                [
                    endpoint("10.244.1.31", W1, ready=False, serving=True, terminating=True),
                    endpoint("10.244.2.31", W2, ready=False, serving=False, terminating=True),
                ],
                [("http", 8080, "TCP")],
            ),
        ],
        on_every_node(vs("10.96.10.3", 80, "TCP", "10.244.1.31:8080")),
    ),
    case(
        "ready-beats-terminating",
        "a serving terminating endpoint is not used while another is ready (a rollout)",
        [
            service("dns-rollout", [port("dns", 53, "UDP")], ["10.96.10.4"]),
            endpoint_slice(
                "dns-rollout",
                "a",
                [
                    endpoint("10.244.1.41", W1),
                    endpoint("10.244.2.41", W2, ready=False, serving=True, terminating=True),
                ],
                [("dns", 53, "UDP")],
            ),
        ],
        on_every_node(vs("10.96.10.4", 53, "UDP", "10.244.1.41:53")),
    ),
    case(
        "publish-not-ready-addresses",
        "kube-proxy uses the ready condition alone: with publishNotReadyAddresses the controller marks "
        "starting and terminating pods ready, and both are programmed",
        [
            service("peers", [port("peer", 7000)], ["10.96.10.5"], spec={"publishNotReadyAddresses": True}),
            endpoint_slice(
                "peers",
                "a",
                [
                    endpoint("10.244.1.51", W1, ready=True, serving=False),
                    endpoint("10.244.2.51", W2, ready=True, serving=True, terminating=True),
                ],
                [("peer", 7000, "TCP")],
            ),
        ],
        on_every_node(vs("10.96.10.5", 7000, "TCP", "10.244.1.51:7000", "10.244.2.51:7000")),
    ),
    case(
        "no-endpoints",
        "the virtual server exists without real servers",
        [service("web-empty", [port("http", 80, target=8080)], ["10.96.10.6"])],
        on_every_node(vs("10.96.10.6", 80, "TCP")),
    ),
    case(
        "dual-stack",
        "one proxier per family: each ClusterIP gets only the endpoints of its family",
        [
            service("web-dual", [port("http", 80, target=8080)], ["10.96.10.7", "fd00:10:96::7"]),
            endpoint_slice(
                "web-dual",
                "v4",
                [endpoint("10.244.1.71", W1), endpoint("10.244.2.71", W2)],
                [("http", 8080, "TCP")],
            ),
            endpoint_slice(
                "web-dual",
                "v6",
                [endpoint("fd00:10:244:1::71", W1), endpoint("fd00:10:244:2::71", W2)],
                [("http", 8080, "TCP")],
                address_type="IPv6",
            ),
        ],
        on_every_node(
            vs("10.96.10.7", 80, "TCP", "10.244.1.71:8080", "10.244.2.71:8080"),
            vs("fd00:10:96::7", 80, "TCP", "[fd00:10:244:1::71]:8080", "[fd00:10:244:2::71]:8080"),
        ),
    ),
    case(
        "ipv6-single-stack",
        "an IPv6-only Service",
        [
            service("dns-v6", [port("dns", 53, "UDP")], ["fd00:10:96::8"]),
            endpoint_slice(
                "dns-v6", "a", [endpoint("fd00:10:244:3::81", W3)], [("dns", 53, "UDP")], address_type="IPv6"
            ),
        ],
        on_every_node(vs("fd00:10:96::8", 53, "UDP", "[fd00:10:244:3::81]:53")),
    ),
    case(
        "internal-traffic-policy-local",
        "internalTrafficPolicy Local: each node its own endpoints; a node without one gets none",
        [
            service(
                "node-cache",
                [port("dns", 53, "UDP")],
                ["10.96.10.9"],
                spec={"internalTrafficPolicy": "Local"},
            ),
            endpoint_slice(
                "node-cache",
                "a",
                [endpoint("10.244.1.91", W1), endpoint("10.244.2.91", W2)],
                [("dns", 53, "UDP")],
            ),
        ],
        per_node(
            {
                W1: [vs("10.96.10.9", 53, "UDP", "10.244.1.91:53")],
                W2: [vs("10.96.10.9", 53, "UDP", "10.244.2.91:53")],
                W3: [vs("10.96.10.9", 53, "UDP")],
            }
        ),
    ),
    case(
        "internal-local-terminating-fallback",
        "Local falls back to the node's serving terminating endpoints only when it has no ready one",
        [
            service(
                "node-agent",
                [port("statsd", 8125, "UDP")],
                ["10.96.10.10"],
                spec={"internalTrafficPolicy": "Local"},
            ),
            endpoint_slice(
                "node-agent",
                "a",
                [
                    endpoint("10.244.1.101", W1, ready=False, serving=True, terminating=True),
                    endpoint("10.244.1.102", W1, ready=False, serving=False, terminating=True),
                    endpoint("10.244.2.101", W2),
                    endpoint("10.244.2.102", W2, ready=False, serving=True, terminating=True),
                ],
                [("statsd", 8125, "UDP")],
            ),
        ],
        per_node(
            {
                W1: [vs("10.96.10.10", 8125, "UDP", "10.244.1.101:8125")],
                W2: [vs("10.96.10.10", 8125, "UDP", "10.244.2.101:8125")],
                W3: [vs("10.96.10.10", 8125, "UDP")],
            }
        ),
    ),
    case(
        "topology-zone-hints",
        "zone hints: a node uses the endpoints hinted for its zone; a zone no hint names ignores hints",
        [
            service(
                "api-zonal",
                [port("http", 80, target=8080)],
                ["10.96.10.17"],
                spec={"trafficDistribution": "PreferClose"},
            ),
            endpoint_slice(
                "api-zonal",
                "a",
                [
                    endpoint("10.244.1.171", W1, zones=["zone-a"]),
                    endpoint("10.244.2.171", W2, zones=["zone-b"]),
                    endpoint("10.244.2.172", W2, zones=["zone-b"]),
                ],
                [("http", 8080, "TCP")],
            ),
        ],
        per_node(
            {
                W1: [vs("10.96.10.17", 80, "TCP", "10.244.1.171:8080")],
                W2: [vs("10.96.10.17", 80, "TCP", "10.244.2.171:8080", "10.244.2.172:8080")],
                W3: [
                    vs(
                        "10.96.10.17",
                        80,
                        "TCP",
                        "10.244.1.171:8080",
                        "10.244.2.171:8080",
                        "10.244.2.172:8080",
                    )
                ],
            }
        ),
    ),
    case(
        "topology-hints-incomplete",
        "hints count only when every ready endpoint has one",
        [
            service("api-partial", [port("http", 80, target=8080)], ["10.96.10.18"]),
            endpoint_slice(
                "api-partial",
                "a",
                [endpoint("10.244.1.181", W1, zones=["zone-a"]), endpoint("10.244.2.181", W2)],
                [("http", 8080, "TCP")],
            ),
        ],
        on_every_node(vs("10.96.10.18", 80, "TCP", "10.244.1.181:8080", "10.244.2.181:8080")),
    ),
    case(
        "topology-terminating-fallback",
        "with no ready endpoint the terminating fallback ignores hints",
        [
            service("api-zonal-draining", [port("http", 80, target=8080)], ["10.96.10.19"]),
            endpoint_slice(
                "api-zonal-draining",
                "a",
                [
                    endpoint(
                        "10.244.1.191", W1, ready=False, serving=True, terminating=True, zones=["zone-a"]
                    ),
                    endpoint(
                        "10.244.2.191", W2, ready=False, serving=True, terminating=True, zones=["zone-b"]
                    ),
                ],
                [("http", 8080, "TCP")],
            ),
        ],
        on_every_node(vs("10.96.10.19", 80, "TCP", "10.244.1.191:8080", "10.244.2.191:8080")),
    ),
    case(
        "topology-node-hints",
        "node hints (PreferSameNode) first; a node no node hint names falls back to zone hints",
        [
            service(
                "cache-same-node",
                [port("redis", 6379)],
                ["10.96.10.20"],
                spec={"trafficDistribution": "PreferSameNode"},
            ),
            endpoint_slice(
                "cache-same-node",
                "a",
                [
                    endpoint("10.244.1.201", W1, zones=["zone-a"], for_nodes=[W1]),
                    endpoint("10.244.1.202", W1, zones=["zone-c"], for_nodes=[W1]),
                    endpoint("10.244.2.201", W2, zones=["zone-b"], for_nodes=[W2]),
                ],
                [("redis", 6379, "TCP")],
            ),
        ],
        per_node(
            {
                W1: [vs("10.96.10.20", 6379, "TCP", "10.244.1.201:6379", "10.244.1.202:6379")],
                W2: [vs("10.96.10.20", 6379, "TCP", "10.244.2.201:6379")],
                W3: [vs("10.96.10.20", 6379, "TCP", "10.244.1.202:6379")],
            }
        ),
    ),
    case(
        "named-port-differs-per-slice",
        "a named targetPort resolves per slice: one port name, two numbers",
        [
            service("web-named", [port("http", 80, target="http")], ["10.96.10.21"]),
            endpoint_slice("web-named", "a", [endpoint("10.244.1.211", W1)], [("http", 8080, "TCP")]),
            endpoint_slice("web-named", "b", [endpoint("10.244.2.211", W2)], [("http", 8081, "TCP")]),
        ],
        on_every_node(vs("10.96.10.21", 80, "TCP", "10.244.1.211:8080", "10.244.2.211:8081")),
    ),
    case(
        "multi-port-named",
        "several named ports; a Service port no slice lists has no real servers (targetPort is not used)",
        [
            service(
                "web-multi",
                [
                    port("http", 80, target="http"),
                    port("https", 443, target="https"),
                    port("admin", 8000, target=9000),
                ],
                ["10.96.10.22"],
            ),
            endpoint_slice(
                "web-multi",
                "a",
                [endpoint("10.244.1.221", W1), endpoint("10.244.3.221", W3)],
                [("http", 8080, "TCP"), ("https", 8443, "TCP")],
            ),
        ],
        on_every_node(
            vs("10.96.10.22", 80, "TCP", "10.244.1.221:8080", "10.244.3.221:8080"),
            vs("10.96.10.22", 443, "TCP", "10.244.1.221:8443", "10.244.3.221:8443"),
            vs("10.96.10.22", 8000, "TCP"),
        ),
    ),
    case(
        "endpoint-in-two-slices",
        "an endpoint listed by two slices (moving between them) is one real server",
        [
            service("web-moving", [port("http", 80, target=8080)], ["10.96.10.28"]),
            endpoint_slice("web-moving", "a", [endpoint("10.244.1.28", W1)], [("http", 8080, "TCP")]),
            endpoint_slice(
                "web-moving",
                "b",
                [endpoint("10.244.1.28", W1), endpoint("10.244.3.28", W3)],
                [("http", 8080, "TCP")],
            ),
        ],
        on_every_node(vs("10.96.10.28", 80, "TCP", "10.244.1.28:8080", "10.244.3.28:8080")),
    ),
]
