"""When a schedule's ticks fall: a 5-field cron expression in an IANA time zone, computed
with croniter in that zone, so a tick at 02:30 stays at 02:30 local time across daylight
saving changes.

On the spring-forward day a wall-clock time that does not exist fires at the first time
after the gap (croniter's choice); on the fall-back day a wall-clock time that happens
twice fires the first time only, unless the hour field is `*` (a schedule every hour keeps
every hour)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from bulkops.errors import InputError

# How far back a pass looks for ticks that were missed (a worker down for longer gets
# the ticks of the last day recorded, older ones are not).
LOOKBACK = timedelta(days=1)


def check_cron(expr: str, field: list[str]) -> str:
    """`expr` with its spaces normalised; INVALID_CRON unless it is 5 valid fields."""
    fields = expr.split()
    cron = " ".join(fields)
    if len(fields) != 5 or not croniter.is_valid(cron):
        raise InputError(
            "A cron expression has 5 fields: minute hour day-of-month month day-of-week, "
            'e.g. "30 2 * * *".',
            code="INVALID_CRON",
            field=field,
        )
    try:
        croniter(cron, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise InputError(
            f"{cron!r} names no date that exists (e.g. 31 February).",
            code="INVALID_CRON",
            field=field,
        ) from None
    return cron


def zone(name: str, field: list[str]) -> ZoneInfo:
    """The IANA time zone called `name`; UNKNOWN_TIMEZONE when there is none."""
    try:
        if name and "\x00" not in name:
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise InputError(
        f"{name!r} is not an IANA time zone (e.g. Europe/Berlin, UTC).",
        code="UNKNOWN_TIMEZONE",
        field=field,
    )


def _repeated(tick: datetime, tz: ZoneInfo) -> bool:
    """Whether `tick` is the second occurrence of its wall-clock time (fall-back day)."""
    wall = tick.replace(tzinfo=None)
    first = wall.replace(tzinfo=tz, fold=0)
    return first.utcoffset() != tick.utcoffset()


def ticks_after(cron: str, tz: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The schedule's ticks strictly after `after`, in its zone, for ever."""
    every_hour = cron.split()[1] == "*"
    times = croniter(cron, after.astimezone(tz))
    while True:
        tick: datetime = times.get_next(datetime)
        if every_hour or not _repeated(tick, tz):
            yield tick


def next_runs(cron: str, tz: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next `count` ticks after `after`, in the schedule's zone."""
    ticks = ticks_after(cron, tz, after)
    return [next(ticks) for _ in range(count)]


def due_ticks(
    cron: str, tz: ZoneInfo, first: datetime, now: datetime, *, keep: int = 100
) -> tuple[list[datetime], datetime]:
    """The ticks from `first` (a tick not yet handled) up to `now`, at most the last
    `keep` of them and none older than LOOKBACK, and the first tick after `now`."""
    start = max(first, now - LOOKBACK)
    due: deque[datetime] = deque(maxlen=keep)
    if start == first:
        due.append(first.astimezone(tz))
    for tick in ticks_after(cron, tz, start):
        if tick > now:
            return list(due), tick
        due.append(tick)
    raise AssertionError("unreachable")
