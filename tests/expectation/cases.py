"""The expectation matrix: Service shapes as manifests, with what kube-proxy (IPVS) programs per node.

Each case is a list of manifests (Services and EndpointSlices; the three Nodes of
``manifests.NODES`` are added to every case) and, per node, the virtual servers with their
real servers. The same manifests can be applied to a real cluster and the kernel's
``ipvsadm -Ln``, parsed by ``parse_ipvsadm``, compared with the rows here (NodePorts: pass the
node's local addresses as ``ProxyOptions.node_port_addresses``; a kind node has only its
InternalIPs besides loopback).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.expectation.manifests import (
    NODE_IPV4,
    NODE_IPV6,
    NODE_NAMES,
    W1,
    W2,
    W3,
    Manifest,
    VirtualServerRow,
    endpoint,
    endpoint_slice,
    on_every_node,
    port,
    service,
    vs,
)


@dataclass(frozen=True)
class Case:
    name: str
    why: str
    manifests: list[Manifest]
    expected: dict[str, list[VirtualServerRow]]


def per_node(rows: dict[str, list[VirtualServerRow]]) -> dict[str, list[VirtualServerRow]]:
    assert set(rows) == set(NODE_NAMES)
    return rows


CASES: list[Case] = []


def case(name: str, why: str, manifests: list[Manifest], expected: dict[str, list[VirtualServerRow]]) -> None:
    CASES.append(Case(name, why, manifests, expected))


DNS_PORTS = [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP"), ("metrics", 9153, "TCP")]
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
)
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
)
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
)
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
)
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
)
case(
    "no-endpoints",
    "the virtual server exists without real servers",
    [service("web-empty", [port("http", 80, target=8080)], ["10.96.10.6"])],
    on_every_node(vs("10.96.10.6", 80, "TCP")),
)
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
)
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
)
case(
    "internal-traffic-policy-local",
    "internalTrafficPolicy Local: each node its own endpoints; a node without one gets none",
    [
        service(
            "node-cache", [port("dns", 53, "UDP")], ["10.96.10.9"], spec={"internalTrafficPolicy": "Local"}
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
)
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
)
case(
    "nodeport",
    "a NodePort on each node address of the Service's family, with the cluster-wide endpoints",
    [
        service(
            "web-nodeport",
            [port("http", 80, target=8080, node_port=30080)],
            ["10.96.10.11"],
            type_="NodePort",
        ),
        endpoint_slice(
            "web-nodeport",
            "a",
            [endpoint("10.244.1.111", W1), endpoint("10.244.3.111", W3)],
            [("http", 8080, "TCP")],
        ),
    ],
    {
        name: [
            vs("10.96.10.11", 80, "TCP", "10.244.1.111:8080", "10.244.3.111:8080"),
            vs(NODE_IPV4[name], 30080, "TCP", "10.244.1.111:8080", "10.244.3.111:8080"),
        ]
        for name in NODE_NAMES
    },
)
case(
    "nodeport-external-policy-local",
    "externalTrafficPolicy Local: the NodePort gets the node's endpoints, the ClusterIP all; a node "
    "without a local endpoint gets the cluster-wide set on its NodePort (IPVS mode's fallback)",
    [
        service(
            "ingress-local",
            [port("http", 80, target=8080, node_port=30081)],
            ["10.96.10.12"],
            type_="NodePort",
            spec={"externalTrafficPolicy": "Local"},
        ),
        endpoint_slice(
            "ingress-local",
            "a",
            [endpoint("10.244.1.121", W1), endpoint("10.244.2.121", W2)],
            [("http", 8080, "TCP")],
        ),
    ],
    per_node(
        {
            W1: [
                vs("10.96.10.12", 80, "TCP", "10.244.1.121:8080", "10.244.2.121:8080"),
                vs(NODE_IPV4[W1], 30081, "TCP", "10.244.1.121:8080"),
            ],
            W2: [
                vs("10.96.10.12", 80, "TCP", "10.244.1.121:8080", "10.244.2.121:8080"),
                vs(NODE_IPV4[W2], 30081, "TCP", "10.244.2.121:8080"),
            ],
            W3: [
                vs("10.96.10.12", 80, "TCP", "10.244.1.121:8080", "10.244.2.121:8080"),
                vs(NODE_IPV4[W3], 30081, "TCP", "10.244.1.121:8080", "10.244.2.121:8080"),
            ],
        }
    ),
)
case(
    "external-ips",
    "each externalIP is a virtual server with the Service's port",
    [
        service(
            "web-external",
            [port("http", 80, target=8080)],
            ["10.96.10.13"],
            spec={"externalIPs": ["192.0.2.13"]},
        ),
        endpoint_slice("web-external", "a", [endpoint("10.244.2.131", W2)], [("http", 8080, "TCP")]),
    ],
    on_every_node(
        vs("10.96.10.13", 80, "TCP", "10.244.2.131:8080"),
        vs("192.0.2.13", 80, "TCP", "10.244.2.131:8080"),
    ),
)
case(
    "load-balancer-vip",
    "a load-balancer ingress IP in VIP mode is programmed, besides the ClusterIP and the NodePort",
    [
        service(
            "web-lb",
            [port("http", 80, target=8080, node_port=30082)],
            ["10.96.10.14"],
            type_="LoadBalancer",
            ingress=[{"ip": "198.51.100.14", "ipMode": "VIP"}],
        ),
        endpoint_slice("web-lb", "a", [endpoint("10.244.3.141", W3)], [("http", 8080, "TCP")]),
    ],
    {
        name: [
            vs("10.96.10.14", 80, "TCP", "10.244.3.141:8080"),
            vs("198.51.100.14", 80, "TCP", "10.244.3.141:8080"),
            vs(NODE_IPV4[name], 30082, "TCP", "10.244.3.141:8080"),
        ]
        for name in NODE_NAMES
    },
)
case(
    "load-balancer-proxy-mode",
    "ipMode Proxy: the load balancer proxies to the NodePort, its IP is not programmed",
    [
        service(
            "web-lb-proxy",
            [port("https", 443, target=8443, node_port=30443)],
            ["10.96.10.15"],
            type_="LoadBalancer",
            ingress=[{"ip": "198.51.100.15", "ipMode": "Proxy"}],
        ),
        endpoint_slice("web-lb-proxy", "a", [endpoint("10.244.1.151", W1)], [("https", 8443, "TCP")]),
    ],
    {
        name: [
            vs("10.96.10.15", 443, "TCP", "10.244.1.151:8443"),
            vs(NODE_IPV4[name], 30443, "TCP", "10.244.1.151:8443"),
        ]
        for name in NODE_NAMES
    },
)
case(
    "load-balancer-local-without-node-ports",
    "externalTrafficPolicy Local on a load balancer without NodePorts: its IP gets the node's "
    "endpoints (else the cluster-wide set), the ClusterIP all; an ingress without ipMode is a VIP",
    [
        service(
            "dns-lb-local",
            [port("dns", 53, "UDP")],
            ["10.96.10.16"],
            type_="LoadBalancer",
            spec={
                "externalTrafficPolicy": "Local",
                "allocateLoadBalancerNodePorts": False,
                "healthCheckNodePort": 32016,
            },
            ingress=[{"ip": "198.51.100.16"}],
        ),
        endpoint_slice(
            "dns-lb-local",
            "a",
            [endpoint("10.244.1.161", W1), endpoint("10.244.2.161", W2)],
            [("dns", 53, "UDP")],
        ),
    ],
    per_node(
        {
            W1: [
                vs("10.96.10.16", 53, "UDP", "10.244.1.161:53", "10.244.2.161:53"),
                vs("198.51.100.16", 53, "UDP", "10.244.1.161:53"),
            ],
            W2: [
                vs("10.96.10.16", 53, "UDP", "10.244.1.161:53", "10.244.2.161:53"),
                vs("198.51.100.16", 53, "UDP", "10.244.2.161:53"),
            ],
            W3: [
                vs("10.96.10.16", 53, "UDP", "10.244.1.161:53", "10.244.2.161:53"),
                vs("198.51.100.16", 53, "UDP", "10.244.1.161:53", "10.244.2.161:53"),
            ],
        }
    ),
)
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
            W3: [vs("10.96.10.17", 80, "TCP", "10.244.1.171:8080", "10.244.2.171:8080", "10.244.2.172:8080")],
        }
    ),
)
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
)
case(
    "topology-terminating-fallback",
    "with no ready endpoint the terminating fallback ignores hints",
    [
        service("api-zonal-draining", [port("http", 80, target=8080)], ["10.96.10.19"]),
        endpoint_slice(
            "api-zonal-draining",
            "a",
            [
                endpoint("10.244.1.191", W1, ready=False, serving=True, terminating=True, zones=["zone-a"]),
                endpoint("10.244.2.191", W2, ready=False, serving=True, terminating=True, zones=["zone-b"]),
            ],
            [("http", 8080, "TCP")],
        ),
    ],
    on_every_node(vs("10.96.10.19", 80, "TCP", "10.244.1.191:8080", "10.244.2.191:8080")),
)
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
)
case(
    "named-port-differs-per-slice",
    "a named targetPort resolves per slice: one port name, two numbers",
    [
        service("web-named", [port("http", 80, target="http")], ["10.96.10.21"]),
        endpoint_slice("web-named", "a", [endpoint("10.244.1.211", W1)], [("http", 8080, "TCP")]),
        endpoint_slice("web-named", "b", [endpoint("10.244.2.211", W2)], [("http", 8081, "TCP")]),
    ],
    on_every_node(vs("10.96.10.21", 80, "TCP", "10.244.1.211:8080", "10.244.2.211:8081")),
)
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
)
case(
    "headless",
    "clusterIP None: nothing to program",
    [
        service("db-headless", [port("pg", 5432)], ["None"]),
        endpoint_slice(
            "db-headless",
            "a",
            [endpoint("10.244.1.231", W1)],
            [("pg", 5432, "TCP")],
            labels={"service.kubernetes.io/headless": ""},
        ),
    ],
    on_every_node(),
)
case(
    "external-name",
    "ExternalName: DNS only",
    [
        service(
            "external-db", [port("pg", 5432)], type_="ExternalName", spec={"externalName": "db.example.com"}
        )
    ],
    on_every_node(),
)
case(
    "service-proxy-name",
    "a Service labelled service.kubernetes.io/service-proxy-name belongs to another proxy",
    [
        service(
            "mesh-owned",
            [port("http", 80, target=8080)],
            ["10.96.10.25"],
            labels={"service.kubernetes.io/service-proxy-name": "other-proxy"},
        ),
        endpoint_slice(
            "mesh-owned",
            "a",
            [endpoint("10.244.1.251", W1)],
            [("http", 8080, "TCP")],
            labels={"service.kubernetes.io/service-proxy-name": "other-proxy"},
        ),
    ],
    on_every_node(),
)
case(
    "internal-local-with-node-port",
    "internalTrafficPolicy Local on a NodePort Service: a node without a local endpoint gets the "
    "cluster-wide set on its ClusterIP too (IPVS mode's fallback); the NodePort is Cluster",
    [
        service(
            "node-local-np",
            [port("http", 80, target=8080, node_port=30086)],
            ["10.96.10.26"],
            type_="NodePort",
            spec={"internalTrafficPolicy": "Local"},
        ),
        endpoint_slice(
            "node-local-np",
            "a",
            [endpoint("10.244.1.26", W1), endpoint("10.244.2.26", W2)],
            [("http", 8080, "TCP")],
        ),
    ],
    per_node(
        {
            W1: [
                vs("10.96.10.26", 80, "TCP", "10.244.1.26:8080"),
                vs(NODE_IPV4[W1], 30086, "TCP", "10.244.1.26:8080", "10.244.2.26:8080"),
            ],
            W2: [
                vs("10.96.10.26", 80, "TCP", "10.244.2.26:8080"),
                vs(NODE_IPV4[W2], 30086, "TCP", "10.244.1.26:8080", "10.244.2.26:8080"),
            ],
            W3: [
                vs("10.96.10.26", 80, "TCP", "10.244.1.26:8080", "10.244.2.26:8080"),
                vs(NODE_IPV4[W3], 30086, "TCP", "10.244.1.26:8080", "10.244.2.26:8080"),
            ],
        }
    ),
)
case(
    "dual-stack-node-port",
    "a dual-stack NodePort: each family's node address with that family's endpoints",
    [
        service(
            "web-dual-np",
            [port("http", 80, target=8080, node_port=30087)],
            ["10.96.10.27", "fd00:10:96::27"],
            type_="NodePort",
        ),
        endpoint_slice("web-dual-np", "v4", [endpoint("10.244.2.27", W2)], [("http", 8080, "TCP")]),
        endpoint_slice(
            "web-dual-np",
            "v6",
            [endpoint("fd00:10:244:2::27", W2)],
            [("http", 8080, "TCP")],
            address_type="IPv6",
        ),
    ],
    {
        name: [
            vs("10.96.10.27", 80, "TCP", "10.244.2.27:8080"),
            vs(NODE_IPV4[name], 30087, "TCP", "10.244.2.27:8080"),
            vs("fd00:10:96::27", 80, "TCP", "[fd00:10:244:2::27]:8080"),
            vs(NODE_IPV6[name], 30087, "TCP", "[fd00:10:244:2::27]:8080"),
        ]
        for name in NODE_NAMES
    },
)
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
)
