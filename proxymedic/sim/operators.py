"""Two ways to run ProxyMedic's operator against the simulated cluster's API server.

* ``OperatorThread``: in this process, on an event loop of its own in a thread; its
  ``Controller`` is at hand for tests to look into.
* ``OperatorProcess``: ``proxymedic operator --kubeconfig`` as a subprocess, its own process
  and core as in a cluster, what the benchmarks measure.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import kopf

from proxymedic.api.types import format_duration
from proxymedic.emulator.connection import write_kubeconfig
from proxymedic.kube.client import Connection
from proxymedic.operator.controller import Controller
from proxymedic.operator.handlers import OperatorOptions, run_operator

__all__ = ["OperatorProcess", "OperatorThread", "RunningOperator"]


class RunningOperator(Protocol):
    controller: Controller | None
    """The operator's controller, once it runs; None where it runs in another process."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class OperatorThread:
    """The operator on its own event loop in a thread, stopped through its stop flag."""

    def __init__(self, url: str, options: OperatorOptions) -> None:
        self.url = url
        self.options = options
        self.controller: Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxymedic-operator", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        url = self.url

        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=url, insecure=True)

        def keep(controller: Controller) -> None:
            self.controller = controller

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        connection = Connection(server=url, ssl_context=False)
        await run_operator(connection, login, self.options, stop=self._stop, controller_ready=keep)


def _duration(seconds: float | timedelta) -> str:
    return format_duration(seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds))


class OperatorProcess:
    """``proxymedic operator --kubeconfig`` as a subprocess against the emulator.

    It runs with what the command's flags carry of ``options`` (standalone, priority, the
    coalescing window, the intents' lifetime, the housekeeping interval); no metrics port and no
    liveness endpoint. Its output goes to ``operator.log`` in ``workdir``.
    """

    controller: Controller | None = None

    def __init__(self, url: str, workdir: Path, options: OperatorOptions) -> None:
        self.kubeconfig = write_kubeconfig(url, workdir / "kubeconfig")
        self.log = workdir / "operator.log"
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        options = self.options
        command = [
            sys.executable,
            "-m",
            "proxymedic.cli.main",
            "operator",
            "--kubeconfig",
            str(self.kubeconfig),
            "--metrics-port",
            "0",
            "--liveness-endpoint",
            "",
            "--priority",
            str(options.priority),
            "--coalesce-window",
            _duration(options.controller.coalesce_window),
            "--intent-ttl",
            _duration(options.controller.intent_ttl),
            "--housekeeping-interval",
            _duration(options.housekeeping_interval),
        ]
        return [*command, "--standalone"] if options.standalone else command

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None
