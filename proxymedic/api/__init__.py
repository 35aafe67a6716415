"""The contract between operator and agent: the pydantic models of the proxymedic.io kinds."""
