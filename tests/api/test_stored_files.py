"""Files served from the object store: a product image for its own tenant, and an export
file written in parts (one per batch) through its signed link, whole or by byte range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx

from bulkops.config import Settings
from bulkops.services.signing import signature, signing_key
from bulkops.storage import Storage
from tests.api.test_export_job import JOB_FILE, local, queue_export
from tests.support import GraphQLClient, Tenant, make_products, run_worker

IMAGE = "query($id: ID!) { product(id: $id) { images { url } } }"


async def test_a_product_image_is_served_from_the_store_to_its_tenant_only(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    [product] = await make_products(owner, storage, tenant, 1)
    [image] = (await gql(IMAGE, {"id": str(product)}))["product"]["images"]

    response = await http.get(image["url"], headers={"Authorization": f"Bearer {tenant.token}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert response.content == await storage.read(image["url"].removeprefix("/files/"))

    theirs = {"Authorization": f"Bearer {other_tenant.token}"}
    assert (await http.get(image["url"], headers=theirs)).status_code == 404
    missing = f"/files/{tenant.id}/images/none.svg"
    mine = {"Authorization": f"Bearer {tenant.token}"}
    assert (await http.get(missing, headers=mine)).status_code == 404


async def test_an_export_written_in_parts_downloads_whole_and_by_range(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 25, with_images=False)
    job_id = await queue_export(gql)
    await run_worker(settings.model_copy(update={"batch_size": 10}))
    file = (await gql(JOB_FILE, {"id": job_id}))["job"]["resultFile"]
    key = f"exports/{tenant.id}/{urlsplit(file['url']).path.rsplit('/', 1)[1]}/"
    # The header and three batches.
    assert len(await storage.keys(key)) == 4

    whole = await http.get(local(file["url"]))
    assert whole.status_code == 200
    assert whole.headers["accept-ranges"] == "bytes"
    assert len(whole.content) == file["bytes"]
    assert whole.content.decode().count("\n") == 26

    # A range crossing parts, the end alone, and one past the end.
    start, end = 5, file["bytes"] - 20
    part = await http.get(local(file["url"]), headers={"Range": f"bytes={start}-{end}"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes {start}-{end}/{file['bytes']}"
    assert part.content == whole.content[start : end + 1]
    tail = await http.get(local(file["url"]), headers={"Range": "bytes=-7"})
    assert (tail.status_code, tail.content) == (206, whole.content[-7:])
    past = await http.get(local(file["url"]), headers={"Range": f"bytes={file['bytes']}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{file['bytes']}"

    # A link the service signed whose time has passed: 410, even with a range.
    path = urlsplit(file["url"]).path
    past_expiry = int((datetime.now(UTC) - timedelta(minutes=1)).timestamp())
    sig = signature(signing_key(settings), path=path, tenant_id=tenant.id, expires=past_expiry)
    expired = await http.get(
        f"{path}?expires={past_expiry}&signature={sig}", headers={"Range": "bytes=0-3"}
    )
    assert expired.status_code == 410
    assert expired.json()["errors"][0]["extensions"]["code"] == "LINK_EXPIRED"
    # The real link with a bad signature: 403.
    query = parse_qs(urlsplit(file["url"]).query)
    forged = f"{path}?expires={query['expires'][0]}&signature={'0' * 10}"
    assert (await http.get(forged)).status_code == 403
