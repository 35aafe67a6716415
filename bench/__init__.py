"""Benchmarks that print figures: cluster scale (``python -m bench``), the kernel flush, the parser."""
