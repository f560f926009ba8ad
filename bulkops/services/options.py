"""How a bulk request asks to be run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BulkOptions:
    mode: str = "AUTO"
    dry_run: bool = False
    idempotency_key: str | None = None
    priority: str = "NORMAL"
    error_policy: str = "CONTINUE"
