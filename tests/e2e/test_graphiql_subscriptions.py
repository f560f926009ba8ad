"""GraphiQL's subscriptions, through the vendored graphql-ws client, against the real app:
a job followed from the editor until it ends, under the page's Content-Security-Policy."""

from __future__ import annotations

import asyncpg
from playwright.async_api import expect

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.e2e.browser import LAPTOP, PageWatch, chromium
from tests.support import GraphQLClient, Tenant, make_products, run_worker

QUEUE = """mutation { setProductStatus(selection: {filter: {}}, status: ACTIVE,
  options: {mode: BACKGROUND}) { ... on JobQueued { job { id } } } }"""


async def test_graphiql_follows_a_job_over_graphql_ws(
    server: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 300, with_images=False)
    job_id = (await gql(QUEUE))["setProductStatus"]["job"]["id"]

    async with chromium() as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(f"{server}/graphql#token={tenant.token}")
        editor = page.locator(".graphiql-query-editor .CodeMirror")
        await expect(editor).to_be_visible()
        await editor.evaluate(
            "(node, query) => node.CodeMirror.setValue(query)",
            f'subscription Follow {{ job(id: "{job_id}") {{ status processed total }} }}',
        )
        # GraphiQL reads the operation's name from the editor a moment after a change.
        await page.wait_for_timeout(500)
        await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
        response = page.locator(".graphiql-response .CodeMirror-code")
        await expect(response).to_contain_text("QUEUED")

        await run_worker(settings.model_copy(update={"batch_size": 100}))
        await expect(response).to_contain_text("SUCCEEDED", timeout=20_000)
        await expect(response).to_contain_text('"processed": 300')
        await page.close()

    assert sockets == [f"{server.replace('http://', 'ws://')}/graphql"]
    watch.check()
