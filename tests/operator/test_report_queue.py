"""NodeProxyHealth reports wait in a queue: one per node, judged after EndpointSlice decisions."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import pytest

from proxymedic.operator.controller import Controller
from proxymedic.operator.repairs import NodeRepairs
from tests.scenarios.harness import eventually

pytestmark = pytest.mark.unit


class Deciding:
    """The controller's side of the queue: whether a slice change is still being decided."""

    def __init__(self) -> None:
        self.idle = asyncio.Event()
        self.idle.set()

    @property
    def busy(self) -> bool:
        return not self.idle.is_set()

    @busy.setter
    def busy(self, value: bool) -> None:
        (self.idle.clear if value else self.idle.set)()

    async def decided(self) -> None:
        await self.idle.wait()


def repairs_judging_into(judged: list[tuple[str, Any]], controller: Deciding) -> NodeRepairs:
    repairs = NodeRepairs(cast(Controller, controller))

    async def on_report(node: str, raw: Mapping[str, Any] | None) -> None:
        if raw is not None and raw.get("boom"):
            raise RuntimeError("a report that breaks its judging")
        judged.append((node, None if raw is None else raw["n"]))

    repairs.on_report = on_report  # type: ignore[method-assign]
    return repairs


async def test_a_nodes_newer_report_replaces_the_one_not_judged_yet() -> None:
    judged: list[tuple[str, Any]] = []
    controller = Deciding()
    repairs = repairs_judging_into(judged, controller)
    controller.busy = True  # nothing is judged yet
    repairs.start()
    try:
        repairs.queue_report("node-1", {"n": 1})
        repairs.queue_report("node-2", {"n": 1})
        repairs.queue_report("node-1", {"n": 2})
        repairs.queue_report("node-3", None)  # deleted
        await asyncio.sleep(0.02)
        assert judged == []
        controller.busy = False
        await eventually(lambda: len(judged) == 3)
        assert judged == [("node-2", 1), ("node-1", 2), ("node-3", None)]
    finally:
        await repairs.stop()


async def test_reports_wait_for_a_slice_change_being_decided() -> None:
    judged: list[tuple[str, Any]] = []
    controller = Deciding()
    repairs = repairs_judging_into(judged, controller)
    repairs.start()
    try:
        repairs.queue_report("node-1", {"n": 1})
        await eventually(lambda: judged == [("node-1", 1)])
        controller.busy = True
        repairs.queue_report("node-1", {"n": 2})
        await asyncio.sleep(0.02)
        assert judged == [("node-1", 1)]
        controller.busy = False
        await eventually(lambda: judged == [("node-1", 1), ("node-1", 2)])
    finally:
        await repairs.stop()


async def test_a_report_whose_judging_fails_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    judged: list[tuple[str, Any]] = []
    repairs = repairs_judging_into(judged, Deciding())
    repairs.start()
    try:
        repairs.queue_report("node-1", {"boom": True})
        repairs.queue_report("node-2", {"n": 1})
        await eventually(lambda: judged == [("node-2", 1)])
        assert "judging the report of node node-1 failed" in caplog.text
    finally:
        await repairs.stop()


async def test_many_reports_are_judged_in_batches_between_yields() -> None:
    judged: list[tuple[str, Any]] = []
    repairs = repairs_judging_into(judged, Deciding())
    repairs.start()
    try:
        for i in range(500):
            repairs.queue_report(f"node-{i}", {"n": i})
        await eventually(lambda: len(judged) == 500)
        assert [n for _, n in judged] == list(range(500))
    finally:
        await repairs.stop()
