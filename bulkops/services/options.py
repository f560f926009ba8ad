"""How a bulk request asks to be run."""

from __future__ import annotations

from dataclasses import dataclass

from bulkops.domain import ErrorPolicy, ExecutionMode, Priority
from bulkops.services.chains import ChainStep


@dataclass(frozen=True)
class BulkOptions:
    mode: ExecutionMode = ExecutionMode.AUTO
    dry_run: bool = False
    idempotency_key: str | None = None
    priority: Priority = Priority.NORMAL
    error_policy: ErrorPolicy = ErrorPolicy.CONTINUE
    # The steps that run after this one (`bulkops.services.chains`).
    then: tuple[ChainStep, ...] = ()
