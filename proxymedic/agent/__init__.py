"""The node agent: senses the node's real state, reports it, and executes remediation intents."""
