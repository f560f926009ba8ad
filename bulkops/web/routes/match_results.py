"""GET /jobs/{id}/match-results.csv and .jsonl: a matchProducts job's rows as given, with
what each matched, streamed in row order."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bulkops.models import ProductRow, ResultRow
from bulkops.services import matching
from bulkops.services.container import Services
from bulkops.web.auth import with_tenant
from bulkops.web.responses import attachment_headers, error_response
from bulkops.web.routes.ids import parse_uuid
from bulkops.web.state import AppState

Format = Literal["csv", "jsonl"]
MEDIA_TYPES: dict[Format, str] = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
# Rows read (in one short transaction each) and written out at a time: a slow client
# holds no database connection between pages.
PAGE_ROWS = 2000
MATCH_COLUMNS = (
    "match_status",
    "match_product_id",
    "match_sku",
    "match_name",
    "match_by",
    "match_score",
    "match_candidates",
    "match_error",
)


def _candidates(row: ResultRow, products: dict[int, ProductRow]) -> list[dict[str, Any]]:
    shown = []
    for product_id, score in row.candidates:
        product = products.get(product_id)
        if product is not None:
            shown.append(
                {"id": product_id, "sku": product.sku, "name": product.name, "score": score}
            )
    return shown


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def csv_lines(rows: list[ResultRow], products: dict[int, ProductRow], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for r in rows:
        product = products.get(r.product_id) if r.product_id is not None else None
        candidates = _candidates(r, products)
        writer.writerow(
            [
                r.row,
                *(_cell(r.fields.get(c)) for c in columns),
                r.status,
                product.id if product else "",
                product.sku if product else "",
                product.name if product else "",
                r.matched_by or "",
                "" if r.score is None else r.score,
                json.dumps(candidates) if candidates else "",
                r.error or "",
            ]
        )
    return out.getvalue()


def jsonl_lines(rows: list[ResultRow], products: dict[int, ProductRow]) -> str:
    lines = []
    for r in rows:
        product = products.get(r.product_id) if r.product_id is not None else None
        found = {
            "status": r.status,
            "productId": product.id if product else None,
            "sku": product.sku if product else None,
            "name": product.name if product else None,
            "matchedBy": r.matched_by,
            "score": r.score,
            "candidates": _candidates(r, products),
            "error": r.error,
        }
        lines.append(json.dumps({"row": r.row, "input": r.fields, "match": found}) + "\n")
    return "".join(lines)


async def result_chunks(
    services: Services, tenant_id: str, input_id: str, columns: list[str], fmt: Format
) -> AsyncIterator[bytes]:
    if fmt == "csv":
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow(["row", *columns, *MATCH_COLUMNS])
        yield header.getvalue().encode()
    after = 0
    while True:
        page = await matching.read_results(
            services, tenant_id, input_id, after=after, limit=PAGE_ROWS
        )
        if not page.rows:
            return
        if fmt == "csv":
            yield csv_lines(page.rows, page.products, columns).encode()
        else:
            yield jsonl_lines(page.rows, page.products).encode()
        if len(page.rows) < PAGE_ROWS:
            return
        after = page.rows[-1].row


async def _download(request: Request, tenant: str, fmt: Format) -> Response:
    state: AppState = request.scope["state"]
    services = state["services"]
    raw_id = request.path_params["job_id"]
    job_id = parse_uuid(raw_id)
    input_id = await matching.match_input_of_job(services, tenant, job_id) if job_id else None
    columns = await matching.input_columns(services, tenant, input_id) if input_id else None
    if input_id is None or columns is None:
        return error_response(404, f"No matchProducts job {raw_id}.", "NOT_FOUND", field=["id"])
    shown = [c for c in columns if c != "row"]
    headers = attachment_headers(f"match-results-{job_id}.{fmt}")
    if request.method == "HEAD":
        return Response(media_type=MEDIA_TYPES[fmt], headers=headers)
    return StreamingResponse(
        result_chunks(services, tenant, input_id, shown, fmt),
        media_type=MEDIA_TYPES[fmt],
        headers=headers,
    )


@with_tenant
async def match_results_csv(request: Request, tenant: str) -> Response:
    return await _download(request, tenant, "csv")


@with_tenant
async def match_results_jsonl(request: Request, tenant: str) -> Response:
    return await _download(request, tenant, "jsonl")


def routes() -> list[Route]:
    return [
        Route("/jobs/{job_id}/match-results.csv", match_results_csv, methods=["GET"]),
        Route("/jobs/{job_id}/match-results.jsonl", match_results_jsonl, methods=["GET"]),
    ]
