"""ISO-8601 durations as Service Bus writes them (``PT1M``, ``P14D``, ``P1DT2H``).

Service Bus models "never" (no TTL, no auto-delete) as .NET ``TimeSpan.MaxValue``; floworch models
it as ``None`` and renders it back as :data:`TIMESPAN_MAX_TEXT` so the SDK sees what Azure sends.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

#: How Service Bus spells .NET ``TimeSpan.MaxValue`` ("infinite") in ATOM documents.
TIMESPAN_MAX_TEXT = "P10675199DT2H48M5.4775807S"
#: Anything at least this long is treated as "infinite" when parsed.
INFINITE_THRESHOLD = timedelta(days=10675199)

_ISO_DURATION = re.compile(
    r"^(?P<sign>-)?P(?!$)(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


class DurationFormatError(ValueError):
    """The text is not an ISO-8601 duration floworch understands (no years or months)."""


def parse_iso_duration(text: str) -> timedelta:
    """Parse ``PnWnDTnHnMnS`` (any part optional, fractions allowed) into a timedelta.

    Years and months are rejected because their length is ambiguous; Service Bus never sends them.

    Raises:
        DurationFormatError: when ``text`` is not such a duration.
    """
    match = _ISO_DURATION.match(text.strip())
    if match is None:
        raise DurationFormatError(
            f"{text!r} is not an ISO-8601 duration such as 'PT30S', 'PT5M' or 'P1DT2H'"
        )
    parts: dict[str, Decimal] = {}
    for unit in ("weeks", "days", "hours", "minutes", "seconds"):
        raw = match.group(unit)
        try:
            parts[unit] = Decimal(raw) if raw else Decimal(0)
        except InvalidOperation as exc:  # pragma: no cover - the regex only lets digits through
            raise DurationFormatError(f"{text!r}: bad number {raw!r}") from exc
    total = (
        parts["weeks"] * 604800
        + parts["days"] * 86400
        + parts["hours"] * 3600
        + parts["minutes"] * 60
        + parts["seconds"]
    )
    # timedelta holds microseconds; TimeSpan.MaxValue has 7 fractional digits, so round.
    micros = int((total * 1_000_000).to_integral_value())
    if match.group("sign"):
        micros = -micros
    max_micros = (timedelta.max.days * 86400 + timedelta.max.seconds) * 1_000_000
    if abs(micros) > max_micros:
        raise DurationFormatError(f"{text!r} is longer than this runtime can represent")
    return timedelta(microseconds=micros)


def format_iso_duration(value: timedelta | None) -> str:
    """Render a timedelta as Service Bus does (``PT1M``, ``P1DT2H``); ``None`` means infinite."""
    if value is None or value >= INFINITE_THRESHOLD:
        return TIMESPAN_MAX_TEXT
    sign = "-" if value < timedelta(0) else ""
    value = abs(value)
    days = value.days
    hours, rest = divmod(value.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}P"
    if days:
        text += f"{days}D"
    time_part = ""
    if hours:
        time_part += f"{hours}H"
    if minutes:
        time_part += f"{minutes}M"
    if seconds or value.microseconds:
        frac = f".{value.microseconds:06d}".rstrip("0") if value.microseconds else ""
        time_part += f"{seconds}{frac}S"
    if time_part:
        text += "T" + time_part
    if text in ("P", "-P"):
        return "PT0S"
    return text


def parse_duration_or_infinite(text: str) -> timedelta | None:
    """Like :func:`parse_iso_duration` but maps ``TimeSpan.MaxValue`` (and longer) to ``None``."""
    value = parse_iso_duration(text)
    return None if value >= INFINITE_THRESHOLD else value
