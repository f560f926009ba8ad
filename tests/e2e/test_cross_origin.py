"""A frontend on another origin, as a product team runs one: its page signs in with a JWT
from the team's identity provider (a real JWKS server started here), starts a background
job on the API through CORS, and follows it over the websocket to its end, using the
frontend guide's client code (docs/examples/bulkops-client.js)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from playwright.async_api import Route

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.e2e.browser import LAPTOP, PageWatch, chromium
from tests.jwks import AUDIENCE, ISSUER, JWKSServer, SigningKey, claims, sign
from tests.support import Tenant, make_products, run_worker

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
# Neither the API's origin nor a localhost one (which dev mode would allow anyway): only
# BULKOPS_ALLOWED_ORIGINS lets it in.
APP = "http://shop-admin.test:8080"
KEY = SigningKey("rsa")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8">
<script src="API/static/graphql-ws/graphql-ws.min.js"></script>
<script type="importmap">{"imports": {"graphql-ws": "/shim/graphql-ws.js"}}</script>
</head><body><script type="module" src="/app.js"></script></body></html>
"""
APP_JS = """
import { createBulkopsClient, readBulkResult, watchJob } from '/bulkops-client.js';

const params = new URLSearchParams(location.hash.slice(1));
const client = createBulkopsClient({ url: params.get('api'), token: params.get('token') });

window.run = (async () => {
  const me = await client.request('{ viewer { tenant subject scopes } }');
  const data = await client.request(
    `mutation { setProductStatus(selection: {filter: {}}, status: ARCHIVED,
       options: {mode: BACKGROUND}) { __typename ... on JobQueued { job { id } } } }`);
  const outcome = readBulkResult(data.setProductStatus);
  window.jobId = outcome.job.id;
  const states = [];
  const last = await watchJob(client, outcome.job.id, (job) => states.push(job.status)).done;
  return { viewer: me.viewer, kind: outcome.kind, states, last };
})();
"""


@pytest.fixture
async def jwks() -> AsyncIterator[JWKSServer]:
    server = JWKSServer([KEY])
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings(settings: Settings, jwks: JWKSServer) -> Settings:
    return settings.model_copy(
        update={
            "dev": False,
            "allowed_origins": [APP],
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_jwks_url": jwks.url,
        }
    )


async def test_a_page_on_another_origin_signs_in_with_a_jwt_and_follows_its_job(
    server: str,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 1200, with_images=False)
    token = sign(KEY, claims(tenant=tenant.name, sub="ana@shop.test", scope="read write"))

    async def serve(route: Route) -> None:
        path = route.request.url.removeprefix(APP).split("#")[0]
        if path in ("/", ""):
            await route.fulfill(body=PAGE.replace("API", server), content_type="text/html")
        elif path == "/shim/graphql-ws.js":
            body = "export const createClient = window.graphqlWs.createClient;"
            await route.fulfill(body=body, content_type="text/javascript")
        elif path == "/app.js":
            await route.fulfill(body=APP_JS, content_type="text/javascript")
        else:
            body = (EXAMPLES / path.lstrip("/")).read_text()
            await route.fulfill(body=body, content_type="text/javascript")

    # The page is fulfilled by the test, so Chromium counts its origin as public and would
    # keep it from reaching a loopback API; a real app and API share a network.
    async with chromium(extra_args=("--disable-features=LocalNetworkAccessChecks",)) as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        await page.route(f"{APP}/**", serve)
        await page.goto(f"{APP}/#api={server}&token={token}")
        await page.wait_for_function("window.jobId")
        await run_worker(settings.model_copy(update={"batch_size": 300}))
        result = await page.evaluate("window.run")
        await page.close()
    # The page's own files come from its origin (fulfilled here), everything else from the
    # API; nothing threw and the API's answers were not blocked.
    assert watch.errors == [] and watch.refused == []
    ws = server.replace("http://", "ws://")
    assert all(url.startswith((APP, server, ws)) for url in watch.requested), watch.requested

    assert result["viewer"] == {
        "tenant": tenant.name,
        "subject": "ana@shop.test",
        "scopes": ["read", "write"],
    }
    assert result["kind"] == "job"
    assert result["states"][0] == "QUEUED"
    assert result["last"]["status"] == "SUCCEEDED"
    assert result["last"]["processed"] == 1200
    archived = await owner.fetchval(
        "SELECT count(*) FROM products WHERE tenant_id = $1 AND status = 'ARCHIVED'", tenant.id
    )
    assert archived == 1200
    created_by = await owner.fetchval("SELECT created_by FROM jobs WHERE tenant_id = $1", tenant.id)
    assert created_by == "ana@shop.test"
