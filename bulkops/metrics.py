"""Every Prometheus metric of the service, in one place, and the worker's metrics server.

Each process (API or worker) counts what it does in the default registry and exposes it
(the API on `/metrics`, a worker on `--metrics-port`); Prometheus adds the processes up.
No label carries a job, tenant or item id: a series per job would grow without bound."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

from bulkops.domain import TERMINAL_STATUSES

OUTCOMES = ("succeeded", "failed", "skipped")

JOBS = Counter(
    "bulkops_jobs_total",
    "Jobs that ended, by operation and terminal status.",
    ["operation", "status"],
)
ITEMS = Counter(
    "bulkops_items_total",
    "Items processed by jobs and inline runs (not dry runs), by operation and outcome.",
    ["operation", "outcome"],
)
BATCH_DURATION = Histogram(
    "bulkops_batch_duration_seconds",
    "One batch of a job: its transaction, from locking the job to the commit.",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JOB_PICKUP = Histogram(
    "bulkops_job_pickup_seconds",
    "From a job's slice being ready on the queue to a worker starting to run it.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
QUEUE_DEPTH = Gauge(
    "bulkops_queue_depth",
    "Job slices ready to run that no worker has started, by priority; read from Redis "
    "when the API is scraped (the same value on every API process).",
    ["priority"],
)
RUNNING_JOBS = Gauge(
    "bulkops_running_jobs",
    "Jobs whose slice this process is running now.",
)
SUBSCRIPTIONS = Gauge(
    "bulkops_subscriptions",
    "Open GraphQL subscriptions on this API process, one per subscribing client "
    "operation (identical ones that share an execution count each).",
)
PROVIDER_CALLS = Counter(
    "bulkops_provider_calls_total",
    "Calls to external providers, by provider and outcome.",
    ["provider", "outcome"],
)
PROVIDER_WAIT = Counter(
    "bulkops_provider_wait_seconds_total",
    "Time spent waiting on external providers' rate limits, by provider.",
    ["provider"],
)
WEBHOOK_DELIVERIES = Counter(
    "bulkops_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome.",
    ["outcome"],
)
HTTP_REQUESTS = Counter(
    "bulkops_http_requests_total",
    "HTTP requests answered by the API, by route template and status code.",
    ["route", "status"],
)
HTTP_DURATION = Histogram(
    "bulkops_http_request_duration_seconds",
    "From an HTTP request's arrival to the end of its response, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def declare_operations(names: Iterable[str]) -> None:
    """Create every operation's series at zero, so that a rate over the first job of an
    operation sees it (a series that appears with its first count loses that count)."""
    for name in names:
        for status in TERMINAL_STATUSES:
            JOBS.labels(name, status)
        for outcome in OUTCOMES:
            ITEMS.labels(name, outcome)
        BATCH_DURATION.labels(name)


def count_job_end(operation: str, status: str) -> None:
    """Count a job that ended (called once its terminal status is committed)."""
    JOBS.labels(operation, status).inc()


def count_items(operation: str, *, succeeded: int, failed: int, skipped: int) -> None:
    for outcome, amount in zip(OUTCOMES, (succeeded, failed, skipped), strict=True):
        if amount:
            ITEMS.labels(operation, outcome).inc(amount)


def serve(port: int, *, host: str) -> Callable[[], None]:
    """Serve the process's metrics over HTTP on a thread of its own (any path answers);
    returns what stops the server."""
    server: WSGIServer
    thread: threading.Thread
    server, thread = start_http_server(port, addr=host, registry=REGISTRY)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return stop
