"""ProxyMedic keeps kube-proxy's dataplane honest."""

__version__ = "0.1.0.dev0"
