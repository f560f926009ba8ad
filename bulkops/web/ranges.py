"""One byte range of a download (RFC 9110 `Range: bytes=…`)."""

from __future__ import annotations


class Unsatisfiable(ValueError):
    """The range starts past the end of the file."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) the `Range` header asks for, or None for the whole file: no
    header, another unit, several ranges or a malformed one (a server may ignore those).
    Unsatisfiable when the range starts past the end."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep or not (first.isdigit() or last.isdigit()):
        return None
    if not first:
        length = int(last)
        if length == 0:
            raise Unsatisfiable
        return max(size - length, 0), size
    start = int(first)
    if last and (not last.isdigit() or int(last) < start):
        return None
    if start >= size:
        raise Unsatisfiable
    end = min(int(last) + 1, size) if last else size
    return start, end
