"""What outside calls cost: counted per batch, added to the job's usage with the batch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Usage:
    """Calls made (each attempt counts once in `calls`; attempts after the first also in
    `retries`), 429 answers, tokens in and out as the provider reported them, and seconds
    spent waiting for the shared limiter. `waiting_now` is how many calls wait for the
    limiter at this moment (not stored)."""

    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    waited_seconds: float = 0.0
    waiting_now: int = 0

    def add(self, other: Usage) -> None:
        self.calls += other.calls
        self.retries += other.retries
        self.rate_limited += other.rate_limited
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.waited_seconds += other.waited_seconds

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def to_json(self) -> dict[str, Any]:
        stored = asdict(self)
        del stored["waiting_now"]
        return stored

    @classmethod
    def from_json(cls, stored: dict[str, Any] | None) -> Usage:
        stored = stored or {}
        return cls(
            calls=int(stored.get("calls", 0)),
            retries=int(stored.get("retries", 0)),
            rate_limited=int(stored.get("rate_limited", 0)),
            tokens_in=int(stored.get("tokens_in", 0)),
            tokens_out=int(stored.get("tokens_out", 0)),
            waited_seconds=float(stored.get("waited_seconds", 0.0)),
        )
