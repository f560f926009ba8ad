"""The shared queue and the live workers, as operators read them (`queueStatus`)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from bulkops.graphql.enums import Priority
from bulkops.services import queue_status


@strawberry.type(description="How many slices of jobs of one priority wait for a worker.")
class QueuedByPriority:
    priority: Priority
    count: int


@strawberry.type(description="A worker process that sent a heartbeat within its TTL.")
class Worker:
    id: strawberry.ID = strawberry.field(description="host:pid:nonce, as in job leases.")
    host: str
    started_at: datetime
    last_seen_at: datetime = strawberry.field(description="Its latest heartbeat.")
    running_slices: int = strawberry.field(description="As of its latest heartbeat.")

    @classmethod
    def from_beat(cls, beat: queue_status.WorkerBeat) -> Worker:
        return cls(
            id=strawberry.ID(beat.id),
            host=beat.host,
            started_at=beat.started_at,
            last_seen_at=beat.last_seen_at,
            running_slices=beat.running_slices,
        )


@strawberry.type(
    description="The queue every tenant's jobs share, and the workers taking from it. A "
    "job waits as one slice at a time: a long job goes back to the queue between slices."
)
class QueueStatus:
    waiting: list[QueuedByPriority] = strawberry.field(
        description="Slices no worker has started yet, by priority (HIGH, NORMAL, LOW)."
    )
    deferred: int = strawberry.field(
        description="Slices put back with a delay (a retry after an error, a tenant over its "
        "running-job quota), whose priority the queue no longer records."
    )
    running_slices: int
    oldest_waiting_seconds: float | None = strawberry.field(
        description="How long the slice waiting longest has been startable; null when none waits."
    )
    workers: list[Worker] = strawberry.field(description="The live workers, oldest first.")

    @classmethod
    def from_status(cls, status: queue_status.QueueStatus) -> QueueStatus:
        return cls(
            waiting=[
                QueuedByPriority(priority=priority, count=count)
                for priority, count in status.waiting.items()
            ],
            deferred=status.deferred,
            running_slices=status.running_slices,
            oldest_waiting_seconds=status.oldest_waiting_seconds,
            workers=[Worker.from_beat(beat) for beat in status.workers],
        )
