"""Cases about where a Service is exposed: NodePorts, externalIPs, load-balancer ingress, and the
Services kube-proxy skips."""

from __future__ import annotations

from tests.expectation.manifests import (
    NODE_IPV4,
    NODE_IPV6,
    NODE_NAMES,
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

CASES: list[Case] = [
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
    ),
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
    ),
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
    ),
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
    ),
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
    ),
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
    ),
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
    ),
    case(
        "external-name",
        "ExternalName: DNS only",
        [
            service(
                "external-db",
                [port("pg", 5432)],
                type_="ExternalName",
                spec={"externalName": "db.example.com"},
            )
        ],
        on_every_node(),
    ),
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
    ),
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
    ),
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
    ),
]
