"""The one duration codec of floworch's Service Bus model: ISO-8601 durations as Service Bus, the
topology document, ATOM and ARM spell them (``PT1M``, ``P1DT2H``; no years or months, whose
length is ambiguous), or a number of seconds.

Service Bus spells "never" (no TTL, no auto-delete) as .NET ``TimeSpan.MaxValue``
(:data:`NEVER_TEXT`); the model holds it as ``None``. Anything at least
:data:`NEVER_THRESHOLD` long is "never".
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal

#: How Service Bus writes .NET ``TimeSpan.MaxValue`` ("never") in ATOM and ARM documents.
NEVER_TEXT = "P10675199DT2H48M5.4775807S"
#: Anything at least this long is Service Bus's "never".
NEVER_THRESHOLD = timedelta(days=10675199)

_ISO = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_SECONDS = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}


class DurationFormatError(ValueError):
    """Not a duration floworch reads; the message says what is accepted."""


def format_duration(value: timedelta | None) -> str:
    """``timedelta(minutes=1)`` -> ``"PT1M"`` (days, hours, minutes, fractional seconds);
    ``None`` or anything "never" -> :data:`NEVER_TEXT`.

    Raises:
        ValueError: a negative duration.
    """
    if value is None or value >= NEVER_THRESHOLD:
        return NEVER_TEXT
    if value < timedelta(0):
        raise ValueError(f"a Service Bus duration cannot be negative: {value}")
    micros = value // timedelta(microseconds=1)
    days, micros = divmod(micros, 86_400_000_000)
    hours, micros = divmod(micros, 3_600_000_000)
    minutes, micros = divmod(micros, 60_000_000)
    seconds = Decimal(micros) / Decimal(1_000_000)
    date = f"{days}D" if days else ""
    time = ""
    if hours:
        time += f"{hours}H"
    if minutes:
        time += f"{minutes}M"
    if seconds:
        time += f"{seconds.normalize():f}S"
    if not date and not time:
        return "PT0S"
    return f"P{date}" + (f"T{time}" if time else "")


def parse_duration(value: object) -> timedelta:
    """An ISO-8601 duration (``"PT30S"``) or a number of seconds; "never" or longer gives
    :data:`NEVER_THRESHOLD`.

    Raises:
        DurationFormatError: saying what is accepted.
    """
    if isinstance(value, bool):
        raise DurationFormatError(
            "expected an ISO-8601 duration such as 'PT30S' or a number of seconds"
        )
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise DurationFormatError("a duration must be a finite number of seconds")
        if value < 0:
            raise DurationFormatError("a duration cannot be negative")
        if value >= NEVER_THRESHOLD.total_seconds():
            return NEVER_THRESHOLD
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise DurationFormatError(
            "expected an ISO-8601 duration such as 'PT30S' or a number of seconds"
        )
    match = _ISO.match(value.strip())
    if match is None:
        raise DurationFormatError(
            f"{value!r} is not an ISO-8601 duration such as 'PT30S', 'PT5M' or 'P1DT2H'"
        )
    total = sum(
        (Decimal(match.group(unit)) * factor for unit, factor in _SECONDS.items() if match[unit]),
        Decimal(0),
    )
    # timedelta holds microseconds; TimeSpan.MaxValue has 7 fractional digits, so round.
    micros = int((total * 1_000_000).to_integral_value())
    if micros >= NEVER_THRESHOLD // timedelta(microseconds=1):
        return NEVER_THRESHOLD
    return timedelta(microseconds=micros)


def never_as_none(value: timedelta | None) -> timedelta | None:
    """``None`` for Service Bus's "never" (``TimeSpan.MaxValue``), else ``value``."""
    if value is None or value >= NEVER_THRESHOLD:
        return None
    return value


def parse_duration_or_never(value: object) -> timedelta | None:
    """:func:`parse_duration`, with "never" as ``None``."""
    return never_as_none(parse_duration(value))
