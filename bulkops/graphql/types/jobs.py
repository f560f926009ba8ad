"""Jobs, their item errors, and the operations they run."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from bulkops.graphql.enums import ChainRunOn, ChainSelection, JobStatus, Priority
from bulkops.graphql.paging import int_cursor, page_size
from bulkops.graphql.types.common import Connection, Info, connection, encode_cursor
from bulkops.graphql.types.export_files import ResultFile, result_file
from bulkops.graphql.types.matching import MatchRow, job_match_results
from bulkops.models import ItemFailure, JobState
from bulkops.operations.calling import CallingOperation
from bulkops.services import chains, job_reads


@strawberry.type
class ItemError:
    item_id: strawberry.ID | None
    row: int | None
    code: str
    message: str
    column: str | None = strawberry.field(
        default=None,
        description="For a row of an uploaded file: the column the error is in, when it "
        "is one column.",
    )

    @classmethod
    def from_failure(cls, failure: ItemFailure) -> ItemError:
        return cls(
            item_id=strawberry.ID(str(failure.item_id)) if failure.item_id is not None else None,
            row=failure.row,
            code=failure.code,
            message=failure.message,
            column=failure.column,
        )


@strawberry.type(
    description="What a job's calls to an outside service cost so far, counted with each "
    "batch it wrote (the calls of a batch that was never written, a killed worker's, are "
    "not counted)."
)
class JobUsage:
    calls: int = strawberry.field(description="Calls made; every attempt counts, retries included.")
    retries: int = strawberry.field(description="Attempts after a call's first one.")
    rate_limited: int = strawberry.field(
        description="Answers the provider gave with 429 Too Many Requests."
    )
    tokens_in: int = strawberry.field(
        description="Prompt tokens, as the provider reported them (0 for calls without tokens)."
    )
    tokens_out: int = strawberry.field(
        description="Completion tokens, as the provider reported them."
    )
    waited_seconds: float = strawberry.field(
        description="Seconds the calls spent waiting for the shared rate limiter."
    )

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> JobUsage:
        return cls(
            calls=int(stored.get("calls", 0)),
            retries=int(stored.get("retries", 0)),
            rate_limited=int(stored.get("rate_limited", 0)),
            tokens_in=int(stored.get("tokens_in", 0)),
            tokens_out=int(stored.get("tokens_out", 0)),
            waited_seconds=float(stored.get("waited_seconds", 0.0)),
        )


@strawberry.type
class Job:
    id: strawberry.ID
    operation: str
    status: JobStatus
    version: int
    priority: Priority
    total: int
    processed: int
    succeeded: int
    failed: int
    skipped: int
    progress: float
    current_step: str | None
    items_per_second: float | None
    eta_seconds: float | None
    recent_errors: list[ItemError]
    result: JSON | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_by: str | None = strawberry.field(
        description="Who created the job: an API token's name or a signed-in user's subject."
    )
    waiting_reason: str | None = strawberry.field(
        description="Why a running job is not progressing although it holds its work, "
        'e.g. "provider unavailable, next try 12:03:05"; null while it progresses.'
    )
    parent_id: strawberry.Private[str | None]
    next_id: strawberry.Private[str | None] = None
    chain: strawberry.Private[tuple[dict[str, Any], ...]] = ()
    stored_usage: strawberry.Private[dict[str, Any] | None] = None
    # What the run's parameters name: the file it writes, the staged input it matches.
    file_id: strawberry.Private[str | None] = None
    input_id: strawberry.Private[str | None] = None

    @classmethod
    def from_state(cls, state: JobState) -> Job:
        return cls(
            id=strawberry.ID(state.id),
            operation=state.operation,
            status=JobStatus(state.status),
            version=state.version,
            priority=Priority(state.priority),
            total=state.total,
            processed=state.processed,
            succeeded=state.succeeded,
            failed=state.failed,
            skipped=state.skipped,
            progress=state.progress,
            current_step=state.current_step,
            items_per_second=state.items_per_second,
            eta_seconds=state.eta_seconds,
            recent_errors=[ItemError.from_failure(e) for e in state.recent_errors],
            result=cast(JSON | None, state.result),
            created_at=state.created_at,
            started_at=state.started_at,
            finished_at=state.finished_at,
            created_by=state.created_by,
            stored_usage=state.usage,
            waiting_reason=state.waiting_reason,
            parent_id=state.parent_id,
            next_id=state.next_id,
            chain=state.chain,
            file_id=state.params.get("file_id"),
            input_id=state.params.get("input_id"),
        )

    @strawberry.field(
        description="What the job's calls to an outside service cost so far; null for "
        "operations that call nothing."
    )
    def usage(self, info: Info) -> JobUsage | None:
        if self.stored_usage is not None:
            return JobUsage.from_stored(self.stored_usage)
        # Nothing written yet: a calling job has used nothing so far.
        op = info.context.services.operations.get(self.operation)
        return JobUsage.from_stored({}) if isinstance(op, CallingOperation) else None

    @strawberry.field
    async def errors(
        self, info: Info, first: int | None = 50, after: str | None = None
    ) -> Connection[ItemError]:
        return await job_errors(info, str(self.id), first=first, after=after)

    @strawberry.field(
        description="1 for the tenant's next job to start, and so on; null unless QUEUED."
    )
    async def queue_position(self, info: Info) -> int | None:
        if self.status is not JobStatus.QUEUED:
            return None
        return await job_reads.queue_position(
            info.context.services.pool, info.context.tenant, str(self.id)
        )

    @strawberry.field(
        description="A matchProducts job's rows and what each matched, in row order "
        "(rows processed so far while it runs); null for other operations. `matched` "
        "keeps matched (true) or other (false) rows; `matchedBy` one rule's matches."
    )
    async def match_results(
        self,
        info: Info,
        first: int | None = 50,
        after: str | None = None,
        matched: bool | None = None,
        matched_by: str | None = None,
    ) -> Connection[MatchRow] | None:
        if self.input_id is None:
            return None
        return await job_match_results(
            info, str(self.id), first=first, after=after, matched=matched, matched_by=matched_by
        )

    @strawberry.field(
        description="An exportProducts job's file, once it has SUCCEEDED and until its "
        "link expires; null otherwise and for other operations."
    )
    async def result_file(self, info: Info) -> ResultFile | None:
        if self.file_id is None or self.status not in (JobStatus.SUCCEEDED, JobStatus.PARTIAL):
            return None
        return await result_file(info, self.file_id)

    @strawberry.field(
        description="The job this one came from: the step before it in a chain, or the job "
        "it retries."
    )
    async def parent(self, info: Info) -> Job | None:
        if self.parent_id is None:
            return None
        state = await info.context.loaders.jobs.load(self.parent_id)
        return Job.from_state(state) if state else None

    @strawberry.field(
        description="The job of the chain's next step, made when this one ended; null "
        "before, and when the chain stopped here."
    )
    async def next(self, info: Info) -> Job | None:
        if self.next_id is None:
            return None
        state = await info.context.loaders.jobs.load(self.next_id)
        return Job.from_state(state) if state else None

    @strawberry.field(
        description="The steps of the job's chain that run after it, in order (empty "
        "without a chain)."
    )
    def next_steps(self) -> list[ChainStep]:
        return [ChainStep.from_stored(step) for step in self.chain]


@strawberry.type(description="A step of a chain, as options.then gave it.")
class ChainStep:
    operation: str
    arguments: JSON
    selection_from: ChainSelection | None
    run_on: ChainRunOn

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> ChainStep:
        step = chains.ChainStep.from_json(data)
        return cls(
            operation=step.operation,
            arguments=cast(JSON, step.arguments),
            selection_from=step.selection_from,
            run_on=step.run_on,
        )


@strawberry.type
class OperationInfo:
    name: str
    description: str
    inline_threshold: int
    inline_limit: int
    batch_size: int


async def job_errors(
    info: Info, job_id: str, *, first: int | None, after: str | None
) -> Connection[ItemError]:
    size = page_size(first)
    start = int_cursor(after, "error")
    page = await job_reads.list_job_errors(
        info.context.services.pool, info.context.tenant, job_id, after=start, limit=size
    )
    return connection(
        page.rows,
        cursor=lambda r: encode_cursor("error", r[0]),
        node=lambda r: ItemError.from_failure(r[1]),
        has_next=page.has_next,
        has_previous=start > 0,
        total=page.total,
    )
