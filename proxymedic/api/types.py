"""Field types shared by the three kinds: each validates in pydantic and in the generated CRD alike.

Every type carries its CRD schema (pattern, bounds, CEL rule) next to its Python validator, so
the API server and the models reject the same input with the same words.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import zoneinfo
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )


SHOWN_VALUE_LENGTH = 64
"""How much of a rejected value an error message repeats: enough to recognise it, never a flood."""


def shown(value: object) -> str:
    """``repr(value)``, shortened: a hostile 10 MB string must not become a 10 MB error message."""
    text = repr(value)
    return (
        text if len(text) <= SHOWN_VALUE_LENGTH else f"{text[: SHOWN_VALUE_LENGTH - 1]}… ({len(text)} chars)"
    )


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry."""
    entry: dict[str, Any] = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


# --- Durations: Go syntax, as kubectl users write them ("30s", "5m", "1h30m", "250ms"). ---

_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
DURATION_MAX_LENGTH = 32
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> timedelta:
    """Parse a Go-style duration such as ``90s`` or ``1h30m``; raise ValueError with the reason."""
    if isinstance(value, timedelta):
        return value
    if (
        not isinstance(value, str)
        or len(value) > DURATION_MAX_LENGTH
        or not re.fullmatch(DURATION_PATTERN, value)
    ):
        raise ValueError(
            f"{shown(value)} is not a duration: use a number and a unit, such as 30s, 5m or 1h30m"
        )
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(
            f"{shown(value)} is out of range: a duration is at most days long, not eons"
        ) from None


def format_duration(value: timedelta) -> str:
    """The shortest Go-style spelling of a duration: 90 s prints as ``1m30s``."""
    millis = round(value.total_seconds() * 1000)
    if millis == 0:
        return "0s"
    parts: list[str] = []
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    seconds, millis = divmod(millis, 1000)
    for number, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms")):
        if number:
            parts.append(f"{number}{unit}")
    return "".join(parts)


def format_elapsed(value: timedelta) -> str:
    """A measured time for people to read: ``45ms`` below a second, ``5.5s`` below a minute, then whole
    seconds (``1m23s``). Unlike format_duration it rounds: ``5s546ms`` reads as noise."""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 59.95:
        return f"{seconds:.1f}s"
    return format_duration(timedelta(seconds=round(seconds)))


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "maxLength": DURATION_MAX_LENGTH}),
]


@dataclass(frozen=True)
class DurationBounds:
    """Bounds of a Duration field, checked by pydantic and by a CEL rule in the CRD.

    Use as ``Annotated[Duration, DurationBounds("10s", "1h")]``.
    """

    low: str
    high: str

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        low, high = parse_duration(self.low), parse_duration(self.high)

        def check(value: timedelta) -> timedelta:
            if not low <= value <= high:
                raise ValueError(
                    f"{format_duration(value)} is out of range: must be between {self.low} and {self.high}"
                )
            return value

        return core_schema.no_info_after_validator_function(check, handler(source_type))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = dict(handler(schema))
        json_schema["x-kubernetes-validations"] = [
            cel(
                f"duration(self) >= duration('{self.low}') && duration(self) <= duration('{self.high}')",
                f"must be between {self.low} and {self.high}",
            )
        ]
        return json_schema


# --- IP addresses, ports, names. ---


@functools.lru_cache(maxsize=4096)
def _canonical_ip(value: str) -> str:
    # Cached: every agent parses every intent, and the same few addresses recur in each.
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 or IPv6 address") from None


IPAddressStr = Annotated[
    str,
    AfterValidator(_canonical_ip),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": 45,
            "x-kubernetes-validations": [cel("isIP(self)", "must be an IPv4 or IPv6 address")],
        }
    ),
]

Port = Annotated[int, Field(ge=1, le=65535)]


@dataclass(frozen=True)
class Matches:
    """A string checked by a regular expression, with an error that says what was expected.

    Use as ``Annotated[str, Matches(pattern, "a valid name", max_length=63)]``; the CRD gets
    the same pattern and length bounds.
    """

    pattern: str
    what: str
    max_length: int
    min_length: int = 1

    def __get_pydantic_core_schema__(
        self, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        compiled = re.compile(self.pattern)

        def check(value: str) -> str:
            if not self.min_length <= len(value) <= self.max_length:
                raise ValueError(
                    f"{shown(value)} must be {self.min_length} to {self.max_length} characters long"
                )
            if not compiled.fullmatch(value):
                raise ValueError(f"{shown(value)} is not {self.what}")
            return value

        return core_schema.no_info_after_validator_function(check, handler(source_type))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = dict(handler(schema))
        json_schema.update(pattern=self.pattern, minLength=self.min_length, maxLength=self.max_length)
        return json_schema


DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
NamespaceName = Annotated[
    str, Matches(DNS1123_LABEL, "a valid name: lowercase letters, digits and '-' (RFC 1123)", 63)
]
ObjectName = Annotated[
    str, Matches(DNS1123_SUBDOMAIN, "a valid name: lowercase letters, digits, '-' and '.' (RFC 1123)", 253)
]
Percent = Annotated[int, Field(ge=0, le=100)]


# --- Count or percentage ("1" or "10%"), as maxUnavailable in a Deployment. ---

_PERCENT_PATTERN = r"^(100|[1-9]?[0-9])%$"


def _count_or_percent(value: object) -> int | str:
    if isinstance(value, bool):
        raise ValueError("must be a count such as 1 or a percentage such as 10%")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{value} is negative: must be a count of 0 or more")
        return value
    if isinstance(value, str) and re.fullmatch(_PERCENT_PATTERN, value):
        return value
    raise ValueError(f"{shown(value)} must be a count such as 1 or a percentage between 0% and 100%")


CountOrPercent = Annotated[
    int | str,
    BeforeValidator(_count_or_percent),
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-validations": [
                cel(
                    f"type(self) == int ? self >= 0 : self.matches('{_PERCENT_PATTERN}')",
                    "must be a count of 0 or more, or a percentage between 0% and 100%",
                )
            ],
        }
    ),
]


def resolve_count_or_percent(value: int | str, total: int) -> int:
    """The count a CountOrPercent stands for out of ``total``, rounding a percentage down but to >= 1."""
    if isinstance(value, int):
        return value
    percent = int(value.rstrip("%"))
    if percent == 0:
        return 0
    return max(1, total * percent // 100)


# --- Time zones and wall-clock times for maintenance windows. ---

CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
ClockTime = Annotated[str, Matches(CLOCK_PATTERN, "a time of day in 24-hour HH:MM form", 5)]


def _known_zone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{shown(value)} is not a known IANA time zone such as UTC or Europe/Berlin"
        ) from None
    return value


TimeZoneName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_known_zone)]
