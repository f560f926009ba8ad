"""fetchProductImages: stage the sources (inline or uploaded) and submit the run."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import UploadFile
from strawberry.file_uploads import Upload

from bulkops.errors import InputError
from bulkops.graphql.inputs import BulkOptions, ImageSourceInput
from bulkops.graphql.resolvers.bulk import payload, rejected, to_options
from bulkops.graphql.types.common import Info
from bulkops.graphql.types.results import BulkResult
from bulkops.services.image_sources import inline_sources, upload_sources
from bulkops.services.submit import submit

OPERATION = "fetchProductImages"


def _source_values(source: ImageSourceInput) -> dict[str, Any]:
    return {"productId": source.product_id, "sku": source.sku, "url": source.url}


async def fetch_product_images(
    info: Info,
    sources: list[ImageSourceInput] | None,
    upload: Upload | None,
    options: BulkOptions | None,
) -> BulkResult:
    """Expected failures come back as `Rejected`, with nothing staged."""
    try:
        return await _fetch_product_images(info, sources, upload, options)
    finally:
        # Strawberry hands the file over open (spooled to disk when large); nothing else
        # closes it.
        if isinstance(upload, UploadFile):
            await upload.close()


async def _fetch_product_images(
    info: Info,
    sources: list[ImageSourceInput] | None,
    upload: Upload | None,
    options: BulkOptions | None,
) -> BulkResult:
    services = info.context.services
    allow_private = services.settings.allow_private_networks
    try:
        bulk_options = await to_options(info, options, OPERATION)
        if (sources is None) == (upload is None):
            raise InputError(
                "Give exactly one of sources or upload.", code="INVALID_INPUT", field=["sources"]
            )
        if sources is not None:
            staged = inline_sources(
                [_source_values(s) for s in sources],
                limit=services.operations[OPERATION].thresholds.inline_limit,
                allow_private_networks=allow_private,
            )
        elif isinstance(upload, UploadFile):
            staged = await upload_sources(
                upload.file, upload.filename, allow_private_networks=allow_private
            )
        else:
            raise InputError(
                "upload must be a file sent as a multipart request.",
                code="UNSUPPORTED_FORMAT",
                field=["upload"],
            )
        result = await submit(
            services,
            info.context.tenant,
            operation=OPERATION,
            selection=staged,
            params={},
            options=bulk_options,
            created_by=info.context.subject,
        )
    except InputError as exc:
        return rejected(exc)
    return await payload(info, result)
