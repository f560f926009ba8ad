"""When schedules' ticks fall: cron in a time zone, across daylight saving changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bulkops.errors import InputError
from bulkops.services.schedule_times import check_cron, due_ticks, next_runs, zone

BERLIN = ZoneInfo("Europe/Berlin")


def test_a_daily_tick_at_0230_berlin_fires_once_on_the_spring_forward_day() -> None:
    runs = next_runs("30 2 * * *", BERLIN, datetime(2026, 3, 27, 12, tzinfo=UTC), 4)
    assert [r.date().isoformat() for r in runs] == [
        "2026-03-28",
        "2026-03-29",
        "2026-03-30",
        "2026-03-31",
    ]
    # 02:30 does not exist on 29 March: the first time after the gap.
    assert [r.strftime("%H:%M%z") for r in runs] == ["02:30+0100", "03:00+0200"] + [
        "02:30+0200"
    ] * 2


def test_a_daily_tick_at_0230_berlin_fires_once_on_the_fall_back_day() -> None:
    runs = next_runs("30 2 * * *", BERLIN, datetime(2026, 10, 23, 12, tzinfo=UTC), 4)
    assert [r.date().isoformat() for r in runs] == [
        "2026-10-24",
        "2026-10-25",
        "2026-10-26",
        "2026-10-27",
    ]
    assert [r.strftime("%H:%M%z") for r in runs] == ["02:30+0200"] * 2 + ["02:30+0100"] * 2


def test_an_hourly_schedule_keeps_both_hours_of_the_fall_back_day() -> None:
    runs = next_runs("30 * * * *", BERLIN, datetime(2026, 10, 25, 0, 0, tzinfo=UTC), 2)
    assert [r.astimezone(UTC).strftime("%H:%M") for r in runs] == ["00:30", "01:30"]


def test_due_ticks_across_the_fall_back_night_fire_the_repeated_time_once() -> None:
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    due, following = due_ticks(
        "30 2 * * *", BERLIN, first, datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
    )
    assert [t.isoformat() for t in due] == ["2026-10-25T02:30:00+02:00"]
    assert following.isoformat() == "2026-10-26T02:30:00+01:00"


def test_due_ticks_look_back_one_day_at_most() -> None:
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    due, _ = due_ticks("0 * * * *", ZoneInfo("UTC"), now - timedelta(days=30), now, keep=1000)
    assert len(due) == 24
    assert due[-1] == now


@pytest.mark.parametrize(
    "expr", ["", "* * * *", "* * * * * *", "61 * * * *", "@daily", "a b c d e", "0 0 31 2 *"]
)
def test_only_five_valid_cron_fields_are_taken(expr: str) -> None:
    with pytest.raises(InputError) as refused:
        check_cron(expr, ["input", "cron"])
    assert (refused.value.code, refused.value.field) == ("INVALID_CRON", ["input", "cron"])


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "Europe/Berlin\x00"])
def test_unknown_time_zones_are_refused(name: str) -> None:
    with pytest.raises(InputError) as refused:
        zone(name, ["input", "timezone"])
    assert refused.value.code == "UNKNOWN_TIMEZONE"
