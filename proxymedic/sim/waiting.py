"""Waiting for a condition that other tasks make true (bounded by the caller's asyncio.timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], interval: float = 0.05) -> None:
    """Return once ``condition()`` holds, checking every ``interval`` seconds."""
    while True:
        if condition():
            return
        await asyncio.sleep(interval)
