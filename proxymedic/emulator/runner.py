"""Ways to run the emulator on 127.0.0.1 with a random port: async, or in a background thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import threading
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Self, TypeVar

import kmock

from proxymedic.emulator.server import KubernetesApiEmulator

T = TypeVar("T")


@contextlib.asynccontextmanager
async def serve(
    emulator: KubernetesApiEmulator | None = None, **options: Any
) -> AsyncIterator[KubernetesApiEmulator]:
    """Serve an emulator over HTTP for the duration of the block; ``emulator.url`` is its address.

    Options (``history_size``, ``bookmark_interval``) apply when a new emulator is created.
    """
    emulator = emulator if emulator is not None else KubernetesApiEmulator(**options)
    async with emulator, kmock.Server(emulator):
        try:
            yield emulator
        finally:
            # End watch streams first, so that the HTTP server has no endless response to wait for.
            emulator.drop_watches()
            await asyncio.sleep(0)


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread, for synchronous users.

    Used by ``kopf.testing.KopfRunner`` tests, the demo and the benchmarks::

        with EmulatorThread() as api:
            api.call(api.emulator.register_crd, crd)
            requests.get(f"{api.url}/api/v1/pods")
    """

    def __init__(self, emulator: KubernetesApiEmulator | None = None, **options: Any) -> None:
        self.emulator = emulator if emulator is not None else KubernetesApiEmulator(**options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._url: str | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("The emulator is not running.")
        return self._url

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("The emulator thread is already started.")
        self._thread = threading.Thread(target=self._run, name="kubernetes-api-emulator", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("The emulator did not start in time.")
        if self._error is not None:
            raise RuntimeError("The emulator failed to start.") from self._error

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("The emulator thread did not stop in time.")
        self._thread = None
        self._url = None

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a function on the emulator's loop (the store is not thread-safe).

        The result is deep-copied, so the caller never shares a stored object with the server.
        """
        if self._loop is None:
            raise RuntimeError("The emulator is not running.")

        async def invoke() -> T:
            return copy.deepcopy(fn(*args, **kwargs))

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(invoke(), self._loop)
        return future.result(timeout=10)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except BaseException as exc:  # reported to start(); nothing else can observe this thread
            self._error = exc
            self._started.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop = asyncio.Event()
        async with serve(self.emulator) as emulator:
            self._url = str(emulator.url).rstrip("/")
            self._loop = loop
            self._started.set()
            await self._stop.wait()
