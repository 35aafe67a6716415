"""The runbook a person follows to diagnose kube-proxy on a node, answered from what ProxyMedic knows.

``snapshot`` holds what was fetched from the API server, ``status`` and ``diagnose`` turn it into
reports without any I/O, ``render`` prints them; ``fetch`` is the only module that talks to
the API server. The analysis reuses the operator's own decision functions (drift detection, the
escalation ladder, the guardrails), so what the CLI says ProxyMedic would do is what it decides.
"""
