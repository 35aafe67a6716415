"""Fixtures for every tier."""

from __future__ import annotations

import asyncio
import inspect
import warnings
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _close_stray_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    """Close the event loop a synchronous test leaves behind in the main thread.

    With pytest-asyncio 1.x such a loop is replaced by the next async test's loop and garbage
    collected unclosed, which fails that test with a ResourceWarning (warnings are errors).
    """
    yield
    if inspect.iscoroutinefunction(request.function):
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
        asyncio.set_event_loop(None)
