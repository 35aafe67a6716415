"""The operator: decides what to repair and checks every decision against the guardrails."""
