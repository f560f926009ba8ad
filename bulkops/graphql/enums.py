"""GraphQL enums, as in the public contract."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum
class ExecutionMode(Enum):
    AUTO = "AUTO"
    INLINE = "INLINE"
    BACKGROUND = "BACKGROUND"


@strawberry.enum
class JobStatus(Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    SUCCEEDED = "SUCCEEDED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


@strawberry.enum
class ProductStatus(Enum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    ARCHIVED = "ARCHIVED"


@strawberry.enum
class Priority(Enum):
    HIGH = "HIGH"
    NORMAL = "NORMAL"
    LOW = "LOW"


@strawberry.enum
class ErrorPolicy(Enum):
    CONTINUE = "CONTINUE"
    ABORT = "ABORT"


@strawberry.enum
class RetryScope(Enum):
    FAILED_ITEMS = "FAILED_ITEMS"
    ALL = "ALL"


@strawberry.enum
class ExportFormat(Enum):
    CSV = "CSV"
    JSONL = "JSONL"
