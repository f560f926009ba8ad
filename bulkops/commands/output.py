"""How the commands print: rich tables on stdout, short forms of times."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

# Piped output keeps whole rows (ids, token names) rather than the 80 columns rich assumes
# without a terminal, so that scripts can read them.
PIPED_WIDTH = 200


def console(*, stderr: bool = False) -> Console:
    found = Console(stderr=stderr)
    return found if found.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)


def age(since: datetime, now: datetime | None = None) -> str:
    """How long ago, in its largest unit: 42s, 5m, 3h, 12d."""
    seconds = max(0, int(((now or datetime.now(UTC)) - since).total_seconds()))
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when(moment: datetime | None) -> str:
    """A time in UTC to the minute, or empty."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment is not None else ""
