"""A small typed async client of the Kubernetes API, shared by the operator and the agent."""
