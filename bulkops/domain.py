"""The names a job, a product and an export can take, shared by every layer.

They are `StrEnum`s so that a value read back from the database as a plain string still
compares equal to its member, and a member goes to SQL, JSON and Redis as its string."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.CANCELLED, JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED}
)


class Priority(StrEnum):
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"


class ExecutionMode(StrEnum):
    AUTO = "AUTO"
    INLINE = "INLINE"
    BACKGROUND = "BACKGROUND"


class ErrorPolicy(StrEnum):
    CONTINUE = "CONTINUE"
    ABORT = "ABORT"


class RetryScope(StrEnum):
    FAILED_ITEMS = "FAILED_ITEMS"
    ALL = "ALL"


class ChainRunOn(StrEnum):
    """When a chain's next step runs: once the step before it SUCCEEDED, or also when it
    ended PARTIAL."""

    SUCCEEDED = "SUCCEEDED"
    SUCCEEDED_OR_PARTIAL = "SUCCEEDED_OR_PARTIAL"


class ChainSelection(StrEnum):
    """Where a chain step's selection comes from: the products a match step matched, or
    the products of the items the step before it changed."""

    MATCHED = "MATCHED"
    SUCCEEDED = "SUCCEEDED"


class ProductStatus(StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"


class ExportFormat(StrEnum):
    CSV = "CSV"
    JSONL = "JSONL"


class Scope(StrEnum):
    """What a caller may do; each scope includes the ones before it. `operator` is the
    service's own, not a tenant's: it reads what every tenant shares (the queue, the
    workers), so only `bulkops token create --scope operator` grants it, never a JWT."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    OPERATOR = "operator"

    @property
    def includes(self) -> frozenset[Scope]:
        order = list(Scope)
        return frozenset(order[: order.index(self) + 1])
