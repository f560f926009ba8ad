"""The helpers both staged uploads (importProducts, matchProducts) read files with."""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Iterator
from contextlib import aclosing

import pytest

from bulkops.uploads import chunked, file_digest, read_ahead


def test_chunked_keeps_order_and_ends_with_the_rest() -> None:
    assert list(chunked(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunked(range(6), 3)) == [[0, 1, 2], [3, 4, 5]]
    assert list(chunked([], 3)) == []


def test_the_digest_is_of_the_whole_file_and_leaves_it_at_its_start() -> None:
    content = b"sku,name\n" + b"A-1,Widget\n" * 200_000
    stream = io.BytesIO(content)
    stream.seek(100)
    assert file_digest(stream) == hashlib.sha256(content).hexdigest()
    assert stream.tell() == 0


async def test_read_ahead_yields_every_chunk_in_order() -> None:
    chunks = chunked(iter(range(10)), 4)
    assert [c async for c in read_ahead(chunks)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


async def test_a_reader_stopping_early_waits_for_the_chunk_being_parsed() -> None:
    release = threading.Event()
    parsed: list[int] = []

    def slow() -> Iterator[list[int]]:
        yield [1]
        release.wait(5)
        time.sleep(0.2)  # still parsing when the reader stops
        parsed.append(2)
        yield [2]

    async def stage() -> None:
        async with aclosing(read_ahead(slow())) as chunks:
            async for _ in chunks:
                release.set()
                raise RuntimeError("staging failed")

    with pytest.raises(RuntimeError):
        await stage()
    # Closing returned only once the second chunk (parsed in a thread) was done.
    assert parsed == [2]
