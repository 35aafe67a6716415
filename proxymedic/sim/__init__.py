"""A simulated cluster for the demo, the end-to-end tests and the benchmarks.

The operator and the agents are ProxyMedic's own, over real HTTP; the kernels are modelled
and kube-proxy is simulated.
"""
