"""Chains: `options.then` runs more bulk mutations, one after another, each once the step
before it ends (SUCCEEDED, or also PARTIAL as the step asks).

A step is checked whole when the chain is submitted (its mutation and arguments, through
the mutation's own resolver: `bulkops.graphql.chained`) and stored on the job as a
`ChainStep`: the operation's parameters as the resolver gave them, and where its selection
comes from. Its selection is either its own (given in its arguments) or the outcome of the
step before it: the products that step changed (SUCCEEDED), or a match's matched products
(MATCHED). That outcome is a durable set of ids (`job_outcomes`), written by each batch in
the batch's own transaction, never a list held in memory.

The next step's job is made in the transaction that ends the step before it
(`continue_chain`), so a step ends and its successor exists together or not at all; it is
put on the queue once committed (`announce_next`), and the reconciler queues it should
that be lost."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic_core import to_jsonable_python
from redis.exceptions import RedisError

from bulkops.db import chains as chains_db
from bulkops.db import jobs as jobs_db
from bulkops.domain import ChainRunOn, ChainSelection, JobStatus
from bulkops.errors import BulkopsError, InputError
from bulkops.models import ItemFailure, JobState
from bulkops.operations import Registry
from bulkops.operations.base import BatchContext, BatchOutcome
from bulkops.selection import Selection
from bulkops.services import job_reads
from bulkops.services.container import Services
from bulkops.services.job_ends import complete_job, fail_job
from bulkops.services.jobs import log_fields
from bulkops.services.progress import publish_state
from bulkops.services.queue import enqueue_slice

log = logging.getLogger(__name__)

MAX_STEPS = 10


@dataclass(frozen=True)
class ChainStep:
    """One step of a chain, as stored on the job before it."""

    operation: str
    # The mutation's arguments as given (shown on the job), and the operation's
    # parameters as its resolver made them.
    arguments: dict[str, Any]
    params: dict[str, Any]
    # The step's own selection (Selection.to_json, with its ids), or None when it comes
    # from the step before (`selection_from`).
    selection: dict[str, Any] | None
    selection_from: ChainSelection | None = None
    run_on: ChainRunOn = ChainRunOn.SUCCEEDED
    priority: str = "NORMAL"
    error_policy: str = "CONTINUE"

    def to_json(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "arguments": self.arguments,
            "params": to_jsonable_python(self.params),
            "selection": self.selection,
            "selectionFrom": self.selection_from,
            "runOn": self.run_on,
            "priority": self.priority,
            "errorPolicy": self.error_policy,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainStep:
        source = data.get("selectionFrom")
        return cls(
            operation=data["operation"],
            arguments=data.get("arguments") or {},
            params=data.get("params") or {},
            selection=data.get("selection"),
            selection_from=ChainSelection(source) if source else None,
            run_on=ChainRunOn(data.get("runOn") or ChainRunOn.SUCCEEDED),
            priority=data.get("priority") or "NORMAL",
            error_policy=data.get("errorPolicy") or "CONTINUE",
        )

    def runs_after(self, status: str) -> bool:
        """Whether the step runs after one that ended `status`."""
        if status == JobStatus.SUCCEEDED:
            return True
        return status == JobStatus.PARTIAL and self.run_on == ChainRunOn.SUCCEEDED_OR_PARTIAL


def selection_json(selection: Selection) -> dict[str, Any]:
    """A step's own selection as stored: a filter, or its ids."""
    if selection.ids is not None:
        return {"ids": list(selection.ids)}
    return selection.to_json()


def stored_selection(data: dict[str, Any]) -> Selection:
    """A step's own selection as `selection_json` stored it."""
    if "ids" in data:
        return Selection(ids=tuple(data["ids"]))
    return Selection.from_job(data)


@dataclass
class Capture:
    """Set while a chain step's mutation runs through its resolver at submission: the
    request is checked (parameters, what they name, its own selection's ids) and taken
    here instead of running."""

    # Whether the step's own selection is checked (it is not when it comes from the step
    # before: the resolver was given a stand-in).
    check_selection: bool
    operation: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    selection: Selection | None = None
    priority: str = "NORMAL"
    error_policy: str = "CONTINUE"


# Set while a chain's step is checked through its mutation's resolver.
CAPTURE: ContextVar[Capture | None] = ContextVar("bulkops_chain_capture", default=None)


def wants_outcome(job: JobState) -> bool:
    """Whether the job's batches record their outcome for the step after it."""
    return bool(job.chain) and job.chain[0].get("selectionFrom") is not None


async def record_outcome(conn: asyncpg.Connection, job: JobState, outcome: BatchOutcome) -> None:
    """In a batch's transaction: the products it changed (for a match, the products it
    matched), when the job's next step takes its selection from them."""
    if wants_outcome(job) and outcome.changed_ids:
        await chains_db.record_outcome(conn, job.id, outcome.changed_ids)


class _StepRefused(BulkopsError):
    def __init__(self, failure: ItemFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def complete_step(
    ctx: BatchContext,
    operations: Registry,
    job: JobState,
    selection: Selection,
    *,
    extra: dict[str, Any] | None = None,
) -> JobState:
    """End a job whose selection is done (`complete_job`) and make its chain's next step
    in the same transaction."""
    job = await complete_job(ctx.conn, job, selection, extra=extra)
    return await continue_chain(ctx, operations, job)


async def continue_chain(ctx: BatchContext, operations: Registry, job: JobState) -> JobState:
    """In the transaction that ended `job`: its next step's job, when it has one and the
    way it ended lets it run. Returns `job` as it is then (pointing to its next step).

    A step that cannot start (its dataset was deleted meanwhile, its operation is gone) is
    made FAILED with the reason, so the chain shows where and why it stopped."""
    if not job.chain or not job.terminal:
        return job
    step = ChainStep.from_json(job.chain[0])
    if not step.runs_after(job.status):
        return job
    conn = ctx.conn
    rest = job.chain[1:]
    try:
        async with conn.transaction():
            following = await _make_step(ctx, operations, job, step, rest)
    except _StepRefused as refused:
        following = await _failed_step(conn, job, step, rest, refused.failure)
    return await chains_db.link_next(conn, job.id, following.id)


async def _make_step(
    ctx: BatchContext,
    operations: Registry,
    job: JobState,
    step: ChainStep,
    rest: tuple[dict[str, Any], ...],
) -> JobState:
    conn = ctx.conn
    op = operations.get(step.operation)
    if op is None:
        raise _StepRefused(
            ItemFailure("UNKNOWN_OPERATION", f"No operation {step.operation!r} runs now.")
        )
    selection = Selection(ids=()) if step.selection is None else stored_selection(step.selection)
    try:
        params = op.parse_params(op.bind(step.params, selection))
        await op.check(conn, params)
        total = 0 if step.selection is None else await op.count(conn, selection)
    except InputError as exc:
        raise _StepRefused(ItemFailure(exc.code, exc.message)) from None
    await op.prepare(ctx, params)
    following = await _insert_step(
        conn,
        job,
        step,
        rest,
        params=params.model_dump(mode="json"),
        selection=selection.to_json(),
        total=total,
        item_ids=selection.ids if step.selection is not None else None,
    )
    if step.selection is None:
        total = await chains_db.items_from_outcome(conn, job.id, following.id)
        following = await jobs_db.set_total(conn, following.id, total)
    return following


async def _failed_step(
    conn: asyncpg.Connection,
    job: JobState,
    step: ChainStep,
    rest: tuple[dict[str, Any], ...],
    failure: ItemFailure,
) -> JobState:
    following = await _insert_step(
        conn, job, step, rest, params=step.params, selection={"ids": True}, total=0
    )
    return await fail_job(conn, following, failure, step="failed")


async def _insert_step(
    conn: asyncpg.Connection,
    job: JobState,
    step: ChainStep,
    rest: tuple[dict[str, Any], ...],
    *,
    params: dict[str, Any],
    selection: dict[str, Any],
    total: int,
    item_ids: tuple[int, ...] | None = None,
) -> JobState:
    """The job of `step`, after `job` (its parent, whose maker it keeps), carrying `rest`."""
    return await jobs_db.insert_job(
        conn,
        operation=step.operation,
        priority=step.priority,
        error_policy=step.error_policy,
        params=params,
        selection=selection,
        total=total,
        parent_id=job.id,
        item_ids=item_ids,
        created_by=job.created_by,
        chain=rest,
    )


async def announce_next(services: Services, job: JobState) -> None:
    """Once the step that made it is committed: the next step's job on the queue (the
    reconciler queues it should this be lost)."""
    if job.next_id is None:
        return
    following = await job_reads.get_job(services.pool, job.tenant_id, job.next_id)
    if following is None:
        return
    try:
        if following.terminal:
            # Refused when it was made: its state goes to subscribers all the same.
            await publish_state(services.redis, following)
            return
        await enqueue_slice(
            services.redis,
            following.id,
            following.tenant_id,
            following.priority,
            announce=following,
        )
    except (RedisError, OSError):
        # Committed and not queued: the reconciler queues it once Redis answers.
        log.warning("could not queue chain step %s; the reconciler will", following.id)
        return
    log.info(
        "chain step queued after %s: %d items", job.id, following.total, extra=log_fields(following)
    )
