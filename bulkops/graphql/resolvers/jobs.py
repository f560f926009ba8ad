"""Job queries, actions and subscriptions."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import asyncpg
import strawberry
from strawberry.exceptions import StrawberryGraphQLError

from bulkops.constants import job_channel, tenant_jobs_channel
from bulkops.errors import InputError
from bulkops.graphql.enums import JobStatus, RetryScope
from bulkops.graphql.paging import page_size, time_id_cursor
from bulkops.graphql.types.common import Connection, Info, connection, encode_cursor
from bulkops.graphql.types.jobs import Job, OperationInfo
from bulkops.graphql.types.results import JobActionResult, JobQueued, Rejected, RetryJobResult
from bulkops.models import JobState
from bulkops.services import job_reads
from bulkops.services import jobs as job_service

JobAction = Callable[[Any, Any, str, str], Awaitable[JobState]]


DATABASE_DOWN = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
log = logging.getLogger(__name__)


def _job_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


async def job(info: Info, id: strawberry.ID) -> Job | None:
    job_id = _job_uuid(id)
    if job_id is None:
        return None
    state = await job_reads.get_job(info.context.services.pool, info.context.tenant, job_id)
    return Job.from_state(state) if state else None


async def jobs(
    info: Info,
    status: list[JobStatus] | None,
    operation: str | None,
    first: int | None,
    after: str | None,
) -> Connection[Job]:
    size = page_size(first)
    page = await job_reads.list_jobs(
        info.context.services.pool,
        info.context.tenant,
        statuses=status or None,
        operation=operation,
        before=time_id_cursor(after, "job"),
        limit=size,
    )
    return connection(
        page.rows,
        cursor=lambda r: encode_cursor("job", f"{r.created_at.isoformat()}|{r.id}"),
        node=Job.from_state,
        has_next=page.has_next,
        has_previous=after is not None,
        total=page.total,
    )


def operations(info: Info) -> list[OperationInfo]:
    return [
        OperationInfo(
            name=op.name,
            description=op.description,
            inline_threshold=op.thresholds.inline_threshold,
            inline_limit=op.thresholds.inline_limit,
            batch_size=op.thresholds.batch_size,
        )
        for op in info.context.services.operations.values()
    ]


async def _act(info: Info, id: strawberry.ID, action: JobAction) -> JobState | Rejected:
    job_id = _job_uuid(id)
    if job_id is None:
        return Rejected(code="INVALID_ID", message=f"{id!r} is not a job id.", field=["id"])
    state = info.context.state
    try:
        return await action(
            state["services"].pool, state["services"].redis, info.context.tenant, job_id
        )
    except InputError as exc:
        return Rejected(code=exc.code, message=exc.message, field=exc.field or None)


async def cancel_job(info: Info, id: strawberry.ID) -> JobActionResult:
    result = await _act(info, id, job_service.cancel_job)
    return Job.from_state(result) if isinstance(result, JobState) else result


async def pause_job(info: Info, id: strawberry.ID) -> JobActionResult:
    result = await _act(info, id, job_service.pause_job)
    return Job.from_state(result) if isinstance(result, JobState) else result


async def resume_job(info: Info, id: strawberry.ID) -> JobActionResult:
    result = await _act(info, id, job_service.resume_job)
    return Job.from_state(result) if isinstance(result, JobState) else result


async def retry_job(info: Info, id: strawberry.ID, scope: RetryScope) -> RetryJobResult:
    async def action(pool: Any, redis: Any, tenant_id: str, job_id: str) -> JobState:
        return await job_service.retry_job(
            pool,
            redis,
            tenant_id,
            job_id,
            scope=scope,
            operations=info.context.services.operations,
            created_by=info.context.subject,
        )

    result = await _act(info, id, action)
    return JobQueued(job=Job.from_state(result)) if isinstance(result, JobState) else result


def _not_found(job_id: str) -> StrawberryGraphQLError:
    return StrawberryGraphQLError(
        f"No job {job_id}.", extensions={"code": "NOT_FOUND", "field": ["id"]}
    )


# One `Job` per published state, shared by every subscriber of the job in this process:
# job id -> (the state, its view).
_views: dict[str, tuple[JobState, Job]] = {}


def _view(state: JobState) -> Job:
    cached = _views.get(state.id)
    if cached is not None and cached[0] is state:
        return cached[1]
    view = Job.from_state(state)
    if len(_views) >= 10_000:
        _views.clear()
    _views[state.id] = (state, view)
    return view


def _in_order(pending: list[JobState], fresh: JobState) -> list[JobState]:
    """States that arrived while the job was re-read, and the state read, by version."""
    return sorted([*pending, fresh], key=lambda s: s.version)


async def subscribe_job(info: Info, id: strawberry.ID) -> AsyncGenerator[Job, None]:
    """Listen first, then read the current state, so no change falls in between; then
    yield only newer versions until a terminal one. A quiet channel triggers a re-read,
    so a lost message costs latency, never the final state.

    The reads are shared with the process's other subscribers of the job (a read that
    started after this one began listening serves it), and so are the states published:
    a subscriber that falls behind gets the newest state of each status."""
    job_id = _job_uuid(id)
    if job_id is None:
        raise _not_found(str(id))
    context = info.context
    tenant = context.tenant
    pool = context.state["services"].pool
    broker = context.state["broker"]
    recheck = context.state["services"].settings.subscription_recheck_seconds

    async def read() -> JobState | None:
        return await job_reads.get_job(pool, tenant, job_id)

    key = ("job", tenant, job_id)
    async with broker.listen(job_channel(job_id)) as mailbox:
        since = time.monotonic()
        state = await broker.reads.read(key, read, since=since)
        if state is None:
            raise _not_found(job_id)
        yield _view(state)
        while not state.terminal:
            new = await mailbox.get(timeout=recheck)
            if new is not None:
                arrived = [new]
            else:
                try:
                    fresh = await broker.reads.read(
                        key, read, since=since, max_age=min(1.0, recheck / 2)
                    )
                except DATABASE_DOWN:
                    # Keep listening: the job's states still arrive over pub/sub, and the
                    # next quiet period reads again.
                    log.warning("could not re-read job %s; will retry", job_id)
                    continue
                if fresh is None:
                    return
                pending = []
                while (queued := mailbox.get_nowait()) is not None:
                    pending.append(queued)
                arrived = _in_order(pending, fresh)
            for new in arrived:
                if new.tenant_id != tenant or new.version <= state.version:
                    continue
                state = new
                yield _view(state)


async def subscribe_jobs(info: Info, status: list[JobStatus] | None) -> AsyncGenerator[Job, None]:
    """The tenant's unfinished jobs first, then every change to any of its jobs."""
    context = info.context
    tenant = context.tenant
    pool = context.state["services"].pool
    broker = context.state["broker"]
    wanted = {s.value for s in status} if status else None
    seen: dict[str, int] = {}

    async def read() -> list[JobState]:
        return await job_reads.list_unfinished_jobs(pool, tenant)

    async with broker.listen(tenant_jobs_channel(tenant)) as mailbox:
        current = await broker.reads.read(("jobs", tenant), read, since=time.monotonic())
        for state in reversed(current):
            seen[state.id] = state.version
            if wanted is None or state.status in wanted:
                yield _view(state)
        while True:
            new = await mailbox.get()
            if new is None or new.tenant_id != tenant or new.version <= seen.get(new.id, 0):
                continue
            seen[new.id] = new.version
            if len(seen) > 10_000:
                seen.clear()
            if wanted is None or new.status in wanted:
                yield _view(new)
