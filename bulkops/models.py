"""Rows that travel between layers, as frozen dataclasses built with `from_row()`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from bulkops.domain import TERMINAL_STATUSES, Scope


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class TokenOwner:
    """What an API token stands for."""

    tenant_id: str
    tenant_name: str
    token_name: str
    scope: Scope

    @classmethod
    def from_row(cls, row: Any) -> TokenOwner:
        return cls(
            tenant_id=str(row["tenant_id"]),
            tenant_name=row["tenant_name"],
            token_name=row["token_name"],
            scope=Scope(row["scope"]),
        )


@dataclass(frozen=True)
class TokenRow:
    """An API token as its tenant's administrators see it: never the token itself."""

    tenant_name: str
    name: str
    scope: Scope
    hash_prefix: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, row: Any) -> TokenRow:
        return cls(
            tenant_name=row["tenant_name"],
            name=row["name"],
            scope=Scope(row["scope"]),
            hash_prefix=row["hash_prefix"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )


@dataclass(frozen=True)
class Caller:
    """Who makes a request: a tenant, a subject (a token's name or a signed-in user) and
    the scopes granted to it."""

    tenant_id: str
    tenant_name: str
    subject: str
    scopes: frozenset[Scope]

    def may(self, needed: Scope) -> bool:
        """Whether one of the caller's scopes includes `needed`."""
        return any(needed in held.includes for held in self.scopes)


@dataclass(frozen=True)
class ProductRow:
    id: int
    sku: str
    barcode: str | None
    name: str
    brand: str | None
    category: str | None
    description: str | None
    status: str
    price: Decimal | None
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ProductRow:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class DatasetRow:
    id: int
    name: str
    product_count: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> DatasetRow:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ImageRow:
    id: int
    product_id: int
    storage_key: str
    content_type: str
    position: int

    @classmethod
    def from_row(cls, row: Any) -> ImageRow:
        return cls(**{f: row[f] for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class ItemFailure:
    """One item that could not be changed, and why."""

    code: str
    message: str
    item_id: int | None = None
    row: int | None = None
    # For a row of an uploaded file: the column the error is in, when it is one column.
    column: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "itemId": self.item_id,
            "row": self.row,
            "column": self.column,
            "code": self.code,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemFailure:
        return cls(
            code=data["code"],
            message=data["message"],
            item_id=data.get("itemId"),
            row=data.get("row"),
            column=data.get("column"),
        )


@dataclass(frozen=True)
class JobState:
    """A job as the API shows it; also the payload published after every change."""

    id: str
    tenant_id: str
    operation: str
    status: str
    version: int
    priority: str
    error_policy: str
    total: int
    processed: int
    succeeded: int
    failed: int
    skipped: int
    counters: dict[str, int]
    current_step: str | None
    recent_errors: tuple[ItemFailure, ...]
    result: dict[str, Any] | None
    parent_id: str | None
    created_at: datetime
    started_at: datetime | None
    updated_at: datetime
    finished_at: datetime | None
    params: dict[str, Any] = field(default_factory=dict)
    slices: int = 0
    created_by: str | None = None
    # What the job's outside calls cost so far (`bulkops.outside.Usage.to_json`); None
    # for operations that call nothing.
    usage: dict[str, Any] | None = None
    # Why the job holds still while running (a provider is down), or None.
    waiting_reason: str | None = None
    # The steps of its chain that run after it (`bulkops.services.chains.ChainStep` as
    # JSON), and the job of the next one once it is made.
    chain: tuple[dict[str, Any], ...] = ()
    next_id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> float:
        if self.total <= 0:
            return 1.0 if self.terminal else 0.0
        return min(1.0, self.processed / self.total)

    @property
    def items_per_second(self) -> float | None:
        if self.started_at is None or self.processed == 0:
            return None
        end = self.finished_at or self.updated_at
        elapsed = (end - self.started_at).total_seconds()
        return self.processed / elapsed if elapsed > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        if self.terminal:
            return 0.0
        ips = self.items_per_second
        if ips is None:
            return None
        return max(0.0, (self.total - self.processed) / ips)

    @classmethod
    def from_row(cls, row: Any) -> JobState:
        return cls(
            id=str(row["id"]),
            tenant_id=str(row["tenant_id"]),
            operation=row["operation"],
            status=row["status"],
            version=row["version"],
            priority=row["priority"],
            error_policy=row["error_policy"],
            total=row["total"],
            processed=row["processed"],
            succeeded=row["succeeded"],
            failed=row["failed"],
            skipped=row["skipped"],
            counters=dict(row["counters"]),
            current_step=row["current_step"],
            recent_errors=tuple(ItemFailure.from_json(e) for e in row["recent_errors"]),
            result=row["result"],
            parent_id=str(row["parent_id"]) if row["parent_id"] else None,
            # Payloads published before the column existed have none.
            created_by=row.get("created_by"),
            usage=dict(row["usage"]) if row.get("usage") is not None else None,
            waiting_reason=row.get("waiting_reason"),
            chain=tuple(row.get("chain") or ()),
            next_id=str(row["next_id"]) if row.get("next_id") else None,
            created_at=row["created_at"],
            started_at=row["started_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            params=dict(row["params"]),
            slices=row["slices"],
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "operation": self.operation,
            "status": self.status,
            "version": self.version,
            "priority": self.priority,
            "error_policy": self.error_policy,
            "total": self.total,
            "processed": self.processed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "skipped": self.skipped,
            "counters": self.counters,
            "current_step": self.current_step,
            "recent_errors": [e.to_json() for e in self.recent_errors],
            "result": self.result,
            "parent_id": self.parent_id,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "updated_at": _iso(self.updated_at),
            "finished_at": _iso(self.finished_at),
            "params": self.params,
            "slices": self.slices,
            "created_by": self.created_by,
            "usage": self.usage,
            "waiting_reason": self.waiting_reason,
            "chain": list(self.chain) or None,
            "next_id": self.next_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobState:
        row = dict(data)
        for key in ("created_at", "started_at", "updated_at", "finished_at"):
            row[key] = _dt(row[key])
        return cls.from_row(row)


@dataclass(frozen=True)
class ExportFileRow:
    id: str
    tenant_id: str
    storage_key: str
    format: str
    rows: int
    bytes: int
    last_id: int
    created_at: datetime
    expires_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ExportFileRow:
        return cls(
            id=str(row["id"]),
            tenant_id=str(row["tenant_id"]),
            storage_key=row["storage_key"],
            format=row["format"],
            rows=row["rows"],
            bytes=row["bytes"],
            last_id=row["last_id"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )


@dataclass(frozen=True)
class ResultRow:
    """A stored outcome with its input row, as the results connection and download show it."""

    row: int
    status: str
    product_id: int | None
    matched_by: str | None
    score: float | None
    candidates: tuple[tuple[int, float], ...]
    fields: dict[str, Any]
    error: str | None

    @classmethod
    def from_row(cls, row: Any) -> ResultRow:
        return cls(
            row=row["row_number"],
            status=row["status"],
            product_id=row["product_id"],
            matched_by=row["matched_by"],
            score=_rounded_score(row["score"]),
            candidates=tuple((c["id"], round(c["score"], 6)) for c in row["candidates"]),
            fields=row["fields"],
            error=row["error_message"],
        )


def _rounded_score(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
