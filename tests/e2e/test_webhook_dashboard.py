"""The dashboard's webhooks page in headless Chromium: each endpoint with its state and
delivery log, and a delivery sent again from its row."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from playwright.async_api import expect

from bulkops.storage import Storage
from tests.e2e.browser import LAPTOP, PageWatch, chromium
from tests.e2e.test_dashboard import queue_job, sign_in
from tests.support import GraphQLClient, Tenant, make_products

CREATE = """
mutation($url: String!, $events: [String!]) {
  createWebhookEndpoint(url: $url, events: $events, description: "alerts") {
    ... on CreatedWebhookEndpoint { endpoint { id } } } }"""
DISABLE = """
mutation($id: ID!) { updateWebhookEndpoint(id: $id, enabled: false) { __typename } }"""


async def test_the_webhooks_page_shows_each_endpoint_and_sends_a_delivery_again(
    server: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    await make_products(owner, storage, tenant, 3, with_images=False)
    live = await gql(CREATE, {"url": "https://93.184.215.14/live", "events": ["job.queued"]})
    off = await gql(CREATE, {"url": "https://93.184.215.14/off", "events": None})
    off_id = off["createWebhookEndpoint"]["endpoint"]["id"]
    assert (await gql(DISABLE, {"id": off_id}))["updateWebhookEndpoint"]["__typename"] == (
        "WebhookEndpoint"
    )
    job_id = await queue_job(gql)

    async with chromium() as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        await sign_in(page, server, tenant.token)
        await page.get_by_role("link", name="Webhooks").click()
        await expect(page.locator("h1")).to_have_text("Webhooks")
        endpoint_id = live["createWebhookEndpoint"]["endpoint"]["id"]
        panel = page.locator(f'.webhook-endpoint[data-endpoint-id="{endpoint_id}"]')
        await expect(panel.locator(".webhook-url")).to_have_text("https://93.184.215.14/live")
        await expect(panel).to_contain_text("job.queued · alerts · 1 delivery")
        row = panel.locator(".delivery-row")
        await expect(row).to_have_count(1)
        await expect(row).to_have_attribute("data-status", "PENDING")
        await expect(row.get_by_role("link")).to_have_text(job_id[:8])
        await row.get_by_role("button", name="Redeliver").click()
        await expect(page.locator(".notice-ok")).to_contain_text("Sending job.queued again.")
        disabled = page.locator(f'.webhook-endpoint[data-endpoint-id="{off_id}"]')
        await expect(disabled).to_contain_text("Disabled by updateWebhookEndpoint.")
        await expect(disabled.get_by_role("button", name="Redeliver")).to_have_count(0)
        await page.screenshot(path=str(tmp_path / "webhooks.png"), full_page=True)
        await row.get_by_role("link").click()
        await expect(page.locator("#job-status")).to_have_text("Queued")
        await page.close()
    watch.check()
