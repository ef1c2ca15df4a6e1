"""Cron arithmetic: next fire times in the trigger's time zone, without drift."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from floworch.model import CronTrigger, croniter_expression


def effective_cron(trigger: CronTrigger, override: str | None) -> str:
    """The cron expression in force: the stored override, else the manifest's."""
    return override or trigger.cron


def next_fire(cron: str, after: datetime, timezone: str = "UTC") -> datetime:
    """The first fire time strictly after ``after`` (UTC in, UTC out).

    The next time is computed from the previous fire time, not from "now", so a late tick does
    not shift the schedule.
    """
    zone = ZoneInfo(timezone)
    local = after.astimezone(zone)
    itr = croniter(croniter_expression(cron), local)
    value = itr.get_next(datetime)
    assert isinstance(value, datetime)
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def latest_missed(
    cron: str, last: datetime, now: datetime, timezone: str = "UTC"
) -> datetime | None:
    """The latest fire time after ``last`` and not after ``now`` (None when nothing was missed).

    Bounded: it walks at most 10,000 fire times.
    """
    missed: datetime | None = None
    current = last
    for _ in range(10_000):
        nxt = next_fire(cron, current, timezone)
        if nxt > now:
            break
        missed = current = nxt
    return missed
