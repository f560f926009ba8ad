"""Stored files in the embedded S3 store: what the service writes, reads, finds and
removes, each key refused unless it is a plain relative path."""

from __future__ import annotations

import pytest

from bulkops.storage import Storage, StorageKeyError


async def test_files_are_written_read_found_and_removed(storage: Storage) -> None:
    assert storage.url.startswith("s3://")
    await storage.write_many({"t/images/1.svg": b"<svg/>", "t/images/2.svg": b"<svg>2</svg>"})
    assert await storage.read("t/images/2.svg") == b"<svg>2</svg>"
    assert await storage.read("t/images/3.svg") is None
    wanted = ["t/images/1.svg", "t/images/2.svg", "t/images/3.svg"]
    assert await storage.existing(wanted) == {"t/images/1.svg", "t/images/2.svg"}

    await storage.delete_many(["t/images/1.svg", "t/images/3.svg"])
    assert await storage.keys() == ["t/images/2.svg"]


async def test_a_file_in_parts_reads_as_one_up_to_its_recorded_size(storage: Storage) -> None:
    await storage.write_part("exports/t/f.csv", 0, b"id,sku\n")
    await storage.write_part("exports/t/f.csv", 7, b"1,A\n2,B\n")
    # A part written by a batch that did not commit: past the recorded size, not read.
    await storage.write_part("exports/t/f.csv", 15, b"3,C\n")
    parts = await storage.parts("exports/t/f.csv", 15)
    assert parts is not None

    async def read(start: int, end: int) -> bytes:
        assert parts is not None
        return b"".join([c async for c in storage.stream_parts(parts, start=start, end=end)])

    assert await read(0, 15) == b"id,sku\n1,A\n2,B\n"
    assert await read(5, 10) == b"u\n1,A"
    assert await read(11, 15) == b"2,B\n"

    # The batch re-run writes less at the same offset, replacing the lost part.
    await storage.write_part("exports/t/f.csv", 15, b"4\n")
    parts = await storage.parts("exports/t/f.csv", 17)
    assert await read(0, 17) == b"id,sku\n1,A\n2,B\n4\n"

    await storage.delete_parted(["exports/t/f.csv", "exports/t/missing.csv"])
    assert await storage.keys("exports/") == []
    assert await storage.parts("exports/t/f.csv", 15) is None


@pytest.mark.parametrize("key", ["../x", "/t/x", "t/../x", "t//x", "t/./x", ""])
async def test_a_key_that_is_not_a_plain_relative_path_is_refused(
    storage: Storage, key: str
) -> None:
    with pytest.raises(StorageKeyError):
        await storage.write(key, b"x")
    with pytest.raises(StorageKeyError):
        await storage.read(key)
    with pytest.raises(StorageKeyError):
        await storage.delete_many(["t/ok", key])
