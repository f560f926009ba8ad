"""Pure logic: selections, progress arithmetic, cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bulkops.errors import InputError
from bulkops.graphql.paging import decode_cursor
from bulkops.graphql.types.common import encode_cursor
from bulkops.models import JobState
from bulkops.selection import ProductFilter, build_selection
from bulkops.storage import Storage, StorageKeyError, check_key
from bulkops.web.ranges import Unsatisfiable, byte_range


def test_ids_are_deduplicated_and_sorted() -> None:
    selection = build_selection(["5", " 3", "5", "10"], None, max_ids=10)
    assert selection.ids == (3, 5, 10)


@pytest.mark.parametrize(
    ("ids", "flt", "code"),
    [
        (None, None, "INVALID_SELECTION"),
        (["1"], ProductFilter(), "INVALID_SELECTION"),
        ([], None, "EMPTY_SELECTION"),
        (["1", "2", "3"], None, "TOO_MANY_IDS"),
        (["1", "1.5"], None, "INVALID_ID"),
        (["0"], None, "INVALID_ID"),
        (["99999999999999999999"], None, "INVALID_ID"),
        (None, ProductFilter(status=("GONE",)), "INVALID_STATUS"),
    ],
)
def test_bad_selections_name_their_problem(
    ids: list[str] | None, flt: ProductFilter | None, code: str
) -> None:
    with pytest.raises(InputError) as raised:
        build_selection(ids, flt, max_ids=2)
    assert raised.value.code == code
    assert raised.value.field[0] == "selection"


def _job(**changes: object) -> JobState:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    values: dict[str, object] = {
        "id": "j",
        "tenant_id": "t",
        "operation": "deleteProducts",
        "status": "RUNNING",
        "version": 3,
        "priority": "NORMAL",
        "error_policy": "CONTINUE",
        "total": 1000,
        "processed": 250,
        "succeeded": 250,
        "failed": 0,
        "skipped": 0,
        "counters": {},
        "current_step": "running",
        "recent_errors": (),
        "result": None,
        "parent_id": None,
        "created_at": start,
        "started_at": start,
        "updated_at": start + timedelta(seconds=5),
        "finished_at": None,
    }
    values.update(changes)
    return JobState(**values)  # type: ignore[arg-type]


def test_progress_rate_and_eta_follow_from_the_counters() -> None:
    job = _job()
    assert job.progress == 0.25
    assert job.items_per_second == 50.0
    assert job.eta_seconds == 15.0


def test_a_job_that_has_not_started_has_no_rate_or_eta() -> None:
    job = _job(started_at=None, processed=0, status="QUEUED")
    assert (job.progress, job.items_per_second, job.eta_seconds) == (0.0, None, None)


def test_job_state_survives_the_trip_through_pub_sub() -> None:
    job = _job()
    assert JobState.from_json(job.to_json()) == job


def test_cursors_round_trip_and_refuse_other_kinds() -> None:
    cursor = encode_cursor("product", 42)
    assert decode_cursor(cursor, "product") == "42"
    with pytest.raises(Exception, match="cursor"):
        decode_cursor(cursor, "job")
    with pytest.raises(Exception, match="cursor"):
        decode_cursor("%%%", "job")


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../b", "a//b", "", "a\\b", "./a"])
def test_storage_keys_cannot_leave_the_storage_root(key: str) -> None:
    with pytest.raises(StorageKeyError, match="plain relative path"):
        check_key(key)


async def test_a_local_folder_is_a_store_too(tmp_path: Path) -> None:
    storage = Storage.from_url((tmp_path / "files").as_uri())
    await storage.write("t/images/1.svg", b"<svg/>")
    assert (tmp_path / "files/t/images/1.svg").read_bytes() == b"<svg/>"
    assert await storage.existing(["t/images/1.svg", "t/images/2.svg"]) == {"t/images/1.svg"}
    await storage.delete_many(["t/images/1.svg", "t/images/2.svg"])
    assert await storage.read("t/images/1.svg") is None
    await storage.write_part("e/f.csv", 0, b"id\n")
    await storage.write_part("e/f.csv", 3, b"1\n")
    parts = await storage.parts("e/f.csv", 5)
    assert parts is not None
    assert b"".join([c async for c in storage.stream_parts(parts, start=2, end=5)]) == b"\n1\n"
    await storage.delete_parted(["e/f.csv"])
    assert await storage.keys() == []
    with pytest.raises(StorageKeyError):
        await storage.write("../outside", b"x")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-9", (0, 10)),
        ("bytes=5-", (5, 100)),
        ("bytes=-10", (90, 100)),
        ("bytes=-1000", (0, 100)),
        ("bytes=90-1000", (90, 100)),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=5-2", None),
        ("bytes=x-", None),
    ],
)
def test_one_byte_range_is_read_from_the_range_header(
    header: str | None, expected: tuple[int, int] | None
) -> None:
    assert byte_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=200-300", "bytes=-0"])
def test_a_range_past_the_end_is_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        byte_range(header, 100)
