"""fetchProductImages: download each source's URL into storage as an image of its product.

Its items are sources (given inline or as an uploaded CSV/JSONL file), staged in
`image_source_rows` when the request is accepted and walked by row number. A batch reads
its rows with their products (a product that does not exist is an item error, a URL the
product already shows is skipped, without a download), downloads the others through the
shared limiter of each host (`fetch:HOST`), checks by its bytes that each body is an
image, stores the file, and adds the images in one statement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import asyncpg
from pydantic import BaseModel

from bulkops.config import Settings
from bulkops.db import image_sources as sources_db
from bulkops.db.image_sources import NewImage, SourceOfBatch, StagedSource
from bulkops.image_types import sniff_image
from bulkops.models import ItemFailure, ProductRow
from bulkops.operations.base import BatchContext, BatchOutcome, Counter, Thresholds
from bulkops.operations.calling import CallBatch, CallContext, CallingOperation
from bulkops.outside import CallFailed, Limits
from bulkops.outside.network import is_private_literal
from bulkops.selection import MAX_ID, Selection

MAX_URL_LENGTH = 2048
MAX_SKU_LENGTH = 1000
# The columns (or JSONL keys) a source is read from, compared without case.
PRODUCT_ID_COLUMNS = ("productid", "product_id")
SKU_COLUMN = "sku"
URL_COLUMN = "url"


class FetchParams(BaseModel):
    source_id: str


@dataclass(frozen=True)
class FetchItem:
    """A source to download: its row, the product it adds an image to, and the URL."""

    id: int
    product_id: int
    url: str
    host: str


@dataclass(frozen=True)
class Fetched:
    """A downloaded image as stored."""

    storage_key: str
    content_type: str
    size: int


class FetchProductImages(CallingOperation[FetchParams, FetchItem, Fetched]):
    name = "fetchProductImages"
    description = (
        "Download images from http(s) URLs and add them to products (named by id or SKU), "
        "inline or from an uploaded CSV/JSONL file; a body must be a JPEG, PNG, GIF, WebP, "
        "AVIF or HEIC image by its bytes."
    )
    # Downloads take seconds: AUTO runs a handful inline, and a job's batch is small
    # enough that a killed worker repeats few downloads.
    thresholds = Thresholds(inline_threshold=25, inline_limit=1000, batch_size=100)
    params_model = FetchParams
    counters = (
        Counter("imagesAdded", "Images added to products."),
        Counter(
            "alreadyPresent",
            "Sources skipped without a download: the product already has an image from "
            "that URL (or an earlier source gives the same URL for it).",
        ),
    )
    summary_description = (
        "Items are sources (rows): succeeded counts images added, skipped the sources whose "
        "URL the product already shows, failed those that could not be fetched (errors name "
        "the row)."
    )
    # Each host is its own provider (limiter and circuit): `call` names it.
    provider: ClassVar[str] = "fetch"

    def limits(self, settings: Settings) -> Limits:
        return Limits(
            requests_per_second=settings.fetch_requests_per_second_per_host,
            concurrency=settings.fetch_concurrency_per_host,
            timeout_seconds=settings.fetch_timeout_seconds,
            max_retries=settings.fetch_max_retries,
            # One host down is its images' item errors, not a job that waits: the sources
            # of a job name many hosts, most of them up.
            failures_to_open=None,
        )

    def bind(self, raw: dict[str, Any], selection: Selection) -> dict[str, Any]:
        """The run walks the staged sources of its selection."""
        assert selection.staged is not None
        return {**raw, "source_id": selection.staged.upload_id}

    async def count(self, conn: asyncpg.Connection, selection: Selection) -> int:
        assert selection.staged is not None
        return await sources_db.source_size(conn, selection.staged.upload_id)

    async def filter_batch(
        self, conn: asyncpg.Connection, selection: Selection, *, after: int, limit: int
    ) -> list[int]:
        assert selection.staged is not None
        return await sources_db.next_rows(
            conn, selection.staged.upload_id, after=after, limit=limit
        )

    async def sample(self, conn: asyncpg.Connection, ids: list[int]) -> list[ProductRow]:
        """A dry run shows no products: its items are rows of a staged input that `ids`
        alone do not name."""
        return []

    async def read_items(
        self, ctx: BatchContext, params: FetchParams, ids: list[int]
    ) -> CallBatch[FetchItem]:
        rows = await sources_db.batch_sources(ctx.conn, params.source_id, ids)
        staged = {r.row for r in rows}
        errors = [
            ItemFailure("NOT_FOUND", "The staged source no longer exists.", item_id=i, row=i)
            for i in ids
            if i not in staged
        ]
        items: list[FetchItem] = []
        duplicates = 0
        seen: set[tuple[int, str]] = set()
        for row in rows:
            failure = _failure(row)
            if failure is not None:
                errors.append(failure)
                continue
            assert row.product_id is not None and row.url is not None
            if row.already_present or (row.product_id, row.url) in seen:
                duplicates += 1
                continue
            seen.add((row.product_id, row.url))
            items.append(FetchItem(row.row, row.product_id, row.url, url_host(row.url)))
        settled = BatchOutcome(
            failed=len(errors),
            skipped=duplicates,
            errors=sorted(errors, key=lambda e: e.row or 0),
            counters={"alreadyPresent": duplicates},
        )
        return CallBatch(items, settled)

    async def call(self, calls: CallContext, params: FetchParams, item: FetchItem) -> Fetched:
        settings = calls.settings
        got = await calls.outside.download(
            f"fetch:{item.host}",
            self.limits(settings),
            item.url,
            tenant_id=calls.tenant_id,
            usage=calls.usage,
            max_bytes=settings.fetch_max_bytes,
        )
        kind = sniff_image(got.content)
        if kind is None:
            raise CallFailed(
                f"{_shown(item.url)} is not an image (JPEG, PNG, GIF, WebP, AVIF or HEIC); "
                f"the server sent {got.content_type or 'no content type'}.",
                code="NOT_AN_IMAGE",
            )
        # The same key for every attempt of the item in this run: a repeated call (a worker
        # killed before its batch committed) overwrites the file instead of leaving another.
        key = image_key(calls.tenant_id, calls.run_id, item.id, kind.extension)
        await calls.storage.write(key, got.content)
        return Fetched(key, kind.content_type, len(got.content))

    async def write_results(
        self, ctx: BatchContext, params: FetchParams, done: list[tuple[FetchItem, Fetched]]
    ) -> BatchOutcome:
        if not done:
            return BatchOutcome()
        images = [
            NewImage(item.id, item.product_id, got.storage_key, got.content_type, item.url)
            for item, got in done
        ]
        added, gone = await sources_db.add_images(ctx.conn, images)
        errors = [
            ItemFailure(
                "NOT_FOUND",
                f"Product {item.product_id} was deleted while its image was downloaded.",
                item_id=item.id,
                row=item.id,
            )
            for item, got in done
            if got.storage_key in gone
        ]
        skipped = len(done) - len(added) - len(errors)
        changed = sorted({item.product_id for item, got in done if got.storage_key in added})
        return BatchOutcome(
            succeeded=len(added),
            failed=len(errors),
            skipped=skipped,
            errors=errors,
            counters={"imagesAdded": len(added), "alreadyPresent": skipped},
            changed_ids=changed,
        )


def image_key(tenant_id: str, run_id: str, row: int, extension: str) -> str:
    """Where a fetched image is stored: under its tenant, by run and row."""
    return f"{tenant_id}/images/fetched/{run_id}/{row}.{extension}"


def url_host(url: str) -> str:
    """The host of a checked URL, lower case (an IPv6 address without brackets)."""
    return (urlsplit(url).hostname or "").lower()


def _failure(row: SourceOfBatch) -> ItemFailure | None:
    """Why a staged row cannot be fetched, or None."""
    if row.error_code is not None:
        return ItemFailure(
            row.error_code,
            row.error_message or row.error_code,
            item_id=row.row,
            row=row.row,
            column=row.error_column,
        )
    if row.product_id is None:
        named = f"id {row.given_id}" if row.given_id is not None else f"SKU {row.given_sku!r}"
        return ItemFailure("NOT_FOUND", f"No product with {named}.", item_id=row.row, row=row.row)
    if row.given_id is not None and row.given_sku is not None and row.given_sku != row.product_sku:
        return ItemFailure(
            "SKU_MISMATCH",
            f"Product {row.given_id} has SKU {row.product_sku!r}, not {row.given_sku!r}.",
            item_id=row.row,
            row=row.row,
            column="sku",
        )
    return None


def _shown(url: str) -> str:
    return url if len(url) <= 200 else f"{url[:200]}..."


class SourceError(ValueError):
    """A source that cannot be fetched: its code, the field it is in, and why."""

    def __init__(self, code: str, field: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


def check_source(
    product_id: Any, sku: Any, url: Any, *, allow_private_networks: bool
) -> tuple[int | None, str | None, str]:
    """A source's product id, SKU and URL, trimmed and checked; raises SourceError naming
    the field at fault (None: the source as a whole)."""
    pid = _product_id(product_id)
    sku_text = _text(sku)
    if sku_text is not None and len(sku_text) > MAX_SKU_LENGTH:
        raise SourceError("VALUE_TOO_LONG", "sku", "The SKU is too long.")
    if pid is None and sku_text is None:
        raise SourceError("MISSING_PRODUCT", None, "Name the product: a productId or a SKU.")
    return pid, sku_text, check_url(url, allow_private_networks=allow_private_networks)


def check_url(value: Any, *, allow_private_networks: bool) -> str:
    """An http(s) URL with a host, trimmed; raises SourceError (field "url")."""
    url = _text(value)
    if url is None:
        raise SourceError("MISSING_VALUE", "url", "A URL is required.")
    if len(url) > MAX_URL_LENGTH:
        raise SourceError(
            "INVALID_URL", "url", f"The URL is longer than {MAX_URL_LENGTH} characters."
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https"):
        raise SourceError("INVALID_URL", "url", f"{_shown(url)!r} is not an http(s) URL.")
    if not host or any(c.isspace() for c in url):
        raise SourceError("INVALID_URL", "url", f"{_shown(url)!r} is not a valid URL.")
    if not allow_private_networks and is_private_literal(host):
        raise SourceError(
            "PRIVATE_NETWORK",
            "url",
            f"{host} is a private, loopback or link-local address; such URLs are refused.",
        )
    return url


def _product_id(value: Any) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        parsed = int(text)
    except ValueError:
        parsed = 0
    if not 0 < parsed <= MAX_ID:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        raise SourceError("INVALID_ID", "productId", f"{shown!r} is not a valid product id.")
    return parsed


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = (value if isinstance(value, str) else str(value)).strip()
    return text or None


def stage_source(
    row: int, values: Mapping[str, Any], *, allow_private_networks: bool
) -> StagedSource:
    """The staged form of an uploaded row (`values` by column name as given; names are
    compared without case): checked, or carrying the error its batch reports, naming its
    row and column."""
    by_key = {name.strip().lower(): (name, value) for name, value in values.items()}
    id_column = next(
        (c for c in PRODUCT_ID_COLUMNS if c in by_key and by_key[c][1] is not None), None
    )

    def get(key: str | None) -> Any:
        return by_key[key][1] if key in by_key else None

    try:
        pid, sku, url = check_source(
            get(id_column),
            get(SKU_COLUMN),
            get(URL_COLUMN),
            allow_private_networks=allow_private_networks,
        )
    except SourceError as exc:
        key = {"productId": id_column, "sku": SKU_COLUMN, "url": URL_COLUMN}.get(exc.field or "")
        column = by_key[key][0] if key in by_key else exc.field
        return StagedSource(row, None, None, None, exc.code, column, f"Row {row}: {exc.message}")
    return StagedSource(row, pid, sku, url)
