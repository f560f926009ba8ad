"""Every Redis key, channel and queue name, versioned."""

from __future__ import annotations

PREFIX = "bulkops:v1"
QUEUE_NAME = f"{PREFIX}:queue"
# Keeps an API process's pub/sub connection subscribed while it has no listeners.
BROKER_CHANNEL = f"{PREFIX}:broker"
# Prefix of the per-tenant request counts; the `limits` library appends
# `tenant/{tenant_id}/{amount}/{multiples}/{granularity}` to it.
RATE_LIMIT_PREFIX = f"{PREFIX}:rate"
# arq job ids of job slices start with this (see `slice_job_id`).
SLICE_PREFIX = f"{PREFIX}:slice:"
# Sorted set of the workers that sent a heartbeat, scored by when it expires (ms); each
# worker's own key (`worker_heartbeat`) holds what it said and expires with it.
WORKERS_KEY = f"{PREFIX}:workers"


def job_channel(job_id: str) -> str:
    """Pub/sub channel carrying every new state of one job."""
    return f"{PREFIX}:job:{job_id}"


def tenant_jobs_channel(tenant_id: str) -> str:
    """Pub/sub channel carrying every new state of any job of one tenant."""
    return f"{PREFIX}:tenant:{tenant_id}:jobs"


# Every job slice's arq job id starts with it (see `slice_job_id`).
SLICE_PREFIX = f"{PREFIX}:slice:"


def slice_job_id(job_id: str, nonce: str) -> str:
    """arq job id of one slice of a bulk job; unique so a re-enqueue is never deduplicated."""
    return f"{SLICE_PREFIX}{job_id}:{nonce}"


def queued_marker(job_id: str) -> str:
    """Key holding the arq job id of the job's latest enqueued slice."""
    return f"{PREFIX}:queued:{job_id}"


def purge_job_id(tenant_id: str, bucket: str) -> str:
    """arq job id of a file purge: at most one is queued per tenant and time bucket."""
    return f"{PREFIX}:purge:{tenant_id}:{bucket}"


def worker_heartbeat(worker_id: str) -> str:
    """Key of a worker's latest heartbeat; it expires unless the worker renews it."""
    return f"{PREFIX}:worker:{worker_id}"


def provider_key(provider: str, part: str) -> str:
    """Key of one outside provider's shared state (`provider`: "llm", "fetch:HOST"):
    its limiter's `requests`, `tokens` and `pause`, its `circuit` and circuit `probe`."""
    return f"{PREFIX}:provider:{provider}:{part}"
