"""Progress fan-out in one API process: listeners that fall behind, and shared reads."""

from __future__ import annotations

import asyncio
import time

from bulkops.services.progress import Mailbox, SharedReads
from tests.unit.test_units import _job


def _take_all(mailbox: Mailbox) -> list[tuple[int, str]]:
    taken = []
    while (state := mailbox.get_nowait()) is not None:
        taken.append((state.version, state.status))
    return taken


def test_a_listener_that_falls_behind_gets_every_status_and_the_newest_of_each() -> None:
    mailbox = Mailbox()
    for version, status in [
        (1, "QUEUED"),
        (2, "RUNNING"),
        (3, "RUNNING"),
        (4, "RUNNING"),
        (5, "PAUSED"),
        (6, "QUEUED"),
        (7, "RUNNING"),
        (8, "SUCCEEDED"),
    ]:
        mailbox.put(_job(version=version, status=status))
    assert _take_all(mailbox) == [
        (1, "QUEUED"),
        (4, "RUNNING"),
        (5, "PAUSED"),
        (6, "QUEUED"),
        (7, "RUNNING"),
        (8, "SUCCEEDED"),
    ]


async def test_a_listener_that_keeps_up_gets_every_version() -> None:
    mailbox = Mailbox()
    seen = []
    for version in range(1, 6):
        mailbox.put(_job(version=version, status="RUNNING"))
        state = await mailbox.get(timeout=1)
        assert state is not None
        seen.append(state.version)
    assert seen == [1, 2, 3, 4, 5]
    assert await mailbox.get(timeout=0.01) is None


def test_states_of_different_jobs_are_never_merged() -> None:
    mailbox = Mailbox()
    mailbox.put(_job(id="a", version=1))
    mailbox.put(_job(id="b", version=1))
    mailbox.put(_job(id="a", version=2))
    assert [(s.id, s.version) for s in iter(mailbox.get_nowait, None)] == [
        ("a", 1),
        ("b", 1),
        ("a", 2),
    ]


async def test_a_waiting_listener_wakes_on_the_next_state() -> None:
    mailbox = Mailbox()
    waiting = asyncio.create_task(mailbox.get(timeout=5))
    await asyncio.sleep(0)
    mailbox.put(_job(version=9))
    state = await asyncio.wait_for(waiting, 1)
    assert state is not None and state.version == 9


class _Source:
    """A value that changes; counts the reads and can hold them until released."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0
        self.release = asyncio.Event()

    async def read(self) -> int:
        self.reads += 1
        value = self.value
        await self.release.wait()
        return value


async def test_simultaneous_reads_share_one_and_later_callers_get_a_later_one() -> None:
    reads: SharedReads[int] = SharedReads()
    source = _Source()
    first = [
        asyncio.create_task(reads.read("k", source.read, since=time.monotonic())) for _ in range(50)
    ]
    await asyncio.sleep(0.01)
    # The read is running: callers that began after it started wait for the next one,
    # which sees what changed meanwhile.
    source.value = 1
    later = [
        asyncio.create_task(reads.read("k", source.read, since=time.monotonic())) for _ in range(50)
    ]
    await asyncio.sleep(0.01)
    source.release.set()
    assert await asyncio.gather(*first) == [0] * 50
    assert await asyncio.gather(*later) == [1] * 50
    assert source.reads == 2
    await reads.close()


async def test_a_recent_read_serves_callers_that_accept_its_age() -> None:
    reads: SharedReads[int] = SharedReads()
    source = _Source()
    source.release.set()
    since = time.monotonic()
    assert await reads.read("k", source.read, since=since) == 0
    source.value = 1
    assert await reads.read("k", source.read, since=since, max_age=60) == 0
    assert await reads.read("k", source.read, since=since) == 1
    assert await reads.read("other", source.read, since=since, max_age=60) == 1
    assert source.reads == 3
    await reads.close()
