"""Ages as kubectl prints them (``5s``, ``3m12s``, ``2h``): k8s.io/apimachinery's HumanDuration."""

from __future__ import annotations

from datetime import datetime, timedelta


def human_duration(delta: timedelta) -> str:
    """The same rounding as kubectl's AGE column: exact seconds first, coarser units as time grows."""
    seconds = int(delta.total_seconds())
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = seconds // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = divmod(hours // 24, 365)
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def age(moment: datetime | None, now: datetime) -> str:
    """Time since ``moment``; ``<unknown>`` when there is none."""
    if moment is None:
        return "<unknown>"
    return human_duration(now - moment)


def plural(count: int, one: str, many: str) -> str:
    """``1 real server``, ``2 real servers``."""
    return f"{count} {one if count == 1 else many}"
