"""GET /jobs/{job_id}/errors.csv: every failed item of a job, as one download."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bulkops.services.job_errors import errors_stream, job_exists
from bulkops.web.auth import with_tenant
from bulkops.web.downloads import CopyResponse, DownloadSlots
from bulkops.web.responses import attachment_headers, error_response
from bulkops.web.routes.ids import parse_uuid
from bulkops.web.state import AppState

MEDIA_TYPE = "text/csv; charset=utf-8"


def routes(*, limit: int) -> list[Route]:
    """The failed-items download; at most `limit` stream at once (more get 429)."""
    slots = DownloadSlots(limit=limit, code="TOO_MANY_DOWNLOADS", noun="downloads")

    @with_tenant
    async def errors_csv(request: Request, tenant: str) -> Response:
        state: AppState = request.scope["state"]
        raw_id: str = request.path_params["job_id"]
        job_id = parse_uuid(raw_id)
        if job_id is None or not await job_exists(state["services"].pool, tenant, job_id):
            return error_response(404, f"No job {raw_id}.", "NOT_FOUND", field=["id"])
        headers = attachment_headers(f"job-{job_id}-errors.csv")
        if request.method == "HEAD":
            return Response(media_type=MEDIA_TYPE, headers=headers)
        refusal = slots.refusal()
        if refusal is not None:
            return refusal
        slots.take()
        stream = errors_stream(state["services"].pool, tenant, job_id, on_close=slots.release)
        return CopyResponse(stream, media_type=MEDIA_TYPE, headers=headers)

    return [Route("/jobs/{job_id}/errors.csv", errors_csv, methods=["GET"])]
