"""GET /jobs/{job_id}/errors.csv: every failed item of a job, as one download."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import asyncpg
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkops.db import jobs as jobs_db
from bulkops.db.job_errors import copy_errors
from bulkops.db.pool import tenant_transaction
from bulkops.export_routes import ExportResponse, error_response
from bulkops.selection import ProductFilter
from bulkops.services.auth import bearer_token
from bulkops.services.export import ExportStream

if TYPE_CHECKING:
    from bulkops.app import AppState

MEDIA_TYPE = "text/csv; charset=utf-8"


class ErrorStream(ExportStream):
    """The export's stream (bounded queue, stall timeout, clean close) over a job's errors."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        tenant_id: str,
        job_id: str,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(pool, tenant_id, ProductFilter(), "csv", on_close=on_close)
        self.job_id = job_id

    async def copy(
        self, conn: asyncpg.Connection, output: Callable[[bytes], Awaitable[None]]
    ) -> None:
        await copy_errors(conn, self.job_id, output=output)


class ErrorDownloads:
    """The failed-items download of one app, and how many it streams at once (each holds
    a pool connection while its client reads; more get 429)."""

    def __init__(self, *, limit: int) -> None:
        self.limit = max(1, limit)
        self.running = 0

    def routes(self) -> list[Route]:
        return [Route("/jobs/{job_id}/errors.csv", self.errors_csv, methods=["GET"])]

    async def errors_csv(self, request: Request) -> Response:
        state: AppState = request.scope["state"]
        tenant = await state["authenticator"].tenant_for(
            bearer_token(request.headers.get("authorization"))
        )
        if tenant is None:
            return error_response(
                401,
                "A valid bearer token is required.",
                "UNAUTHENTICATED",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raw_id: str = request.path_params["job_id"]
        try:
            job_id = str(uuid.UUID(raw_id))
        except ValueError:
            job_id = None
        if job_id is not None:
            async with tenant_transaction(state["pool"], tenant) as conn:
                job = await jobs_db.get_job(conn, job_id)
            if job is None:
                job_id = None
        if job_id is None:
            return error_response(404, f"No job {raw_id}.", "NOT_FOUND", field=["id"])
        headers = {
            "Content-Disposition": f'attachment; filename="job-{job_id}-errors.csv"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        }
        if request.method == "HEAD":
            return Response(media_type=MEDIA_TYPE, headers=headers)
        if self.running >= self.limit:
            return error_response(
                429,
                f"{self.limit} downloads are already running; try again shortly.",
                "TOO_MANY_DOWNLOADS",
                headers={"Retry-After": "5"},
            )
        self.running += 1
        stream = ErrorStream(state["pool"], tenant, job_id, on_close=self._finished)
        return ExportResponse(stream, media_type=MEDIA_TYPE, headers=headers)

    def _finished(self) -> None:
        self.running -= 1
