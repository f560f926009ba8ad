"""The live dashboard at /dashboard in headless Chromium, against the real app and a real
worker: sign in, watch a background job's bar move to SUCCEEDED without a reload, and the
same page on a phone. Screenshots go to each test's tmp_path."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
from playwright.async_api import Page, expect

from bulkops.config import Settings
from bulkops.storage import LocalStorage
from tests.e2e.browser import LAPTOP, PHONE, PageWatch, chromium
from tests.support import GraphQLClient, Tenant, make_products, run_worker

PRODUCTS = 2400
QUEUE = """mutation($status: ProductStatus!) {
  setProductStatus(selection: {filter: {}}, status: $status, options: {mode: BACKGROUND}) {
    __typename ... on JobQueued { job { id } } ... on Rejected { code message } } }"""
JOB = "query($id: ID!) { job(id: $id) { status } }"


async def queue_job(gql: GraphQLClient, status: str = "ACTIVE") -> str:
    result = (await gql(QUEUE, {"status": status}))["setProductStatus"]
    assert result["__typename"] == "JobQueued", result
    return str(result["job"]["id"])


async def sign_in(page: Page, server: str, token: str) -> None:
    await page.goto(f"{server}/dashboard")
    await page.get_by_label("Token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#connection")).to_have_text("Live")
    # Gone after any reload: the test proves the page kept itself current.
    await page.evaluate("window.sameDocument = true")


async def progress_of(page: Page, job_id: str) -> tuple[str | None, int]:
    row = page.locator(f'.job-row[data-job-id="{job_id}"]')
    if not await row.count():
        return None, 0
    value = await row.locator("progress").get_attribute("value")
    return await row.get_attribute("data-status"), int(float(value or 0))


async def test_root_redirects_to_the_dashboard(http: httpx.AsyncClient) -> None:
    response = await http.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/dashboard"
    page = await http.get("/dashboard/jobs/12")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_a_background_job_moves_on_the_list_until_it_succeeds(
    server: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: LocalStorage,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    await make_products(owner, storage, tenant, PRODUCTS, with_images=False)
    # Batches of 200 with a pause between them: the job takes a few seconds, like a big one.
    slow = settings.model_copy(update={"batch_size": 200, "batch_pause_seconds": 0.25})

    async with chromium() as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        await sign_in(page, server, tenant.token)

        job_id = await queue_job(gql)
        row = page.locator(f'.job-row[data-job-id="{job_id}"]')
        await expect(row).to_have_attribute("data-status", "QUEUED")
        await expect(row.locator(".badge")).to_have_text("Queued")
        await expect(page.locator('.count[data-status="QUEUED"] .count-n')).to_have_text("1")

        worker = asyncio.create_task(run_worker(slow))
        seen: list[int] = []
        shot = False
        while not worker.done() or not seen or seen[-1] < PRODUCTS:
            status, value = await progress_of(page, job_id)
            if not seen or value != seen[-1]:
                seen.append(value)
            if status == "RUNNING" and 0 < value < PRODUCTS and not shot:
                await page.screenshot(path=str(tmp_path / "list-running.png"), full_page=True)
                shot = True
            if status == "SUCCEEDED" and value == PRODUCTS:
                break
            await asyncio.sleep(0.05)
        await worker

        await expect(row).to_have_attribute("data-status", "SUCCEEDED")
        await expect(row.locator(".badge")).to_have_text("Succeeded")
        await expect(row.locator(".progress-text")).to_contain_text("2,400 / 2,400 · 100%")
        await expect(page.locator('.count[data-status="SUCCEEDED"] .count-n')).to_have_text("1")
        await expect(page.locator('.count[data-status="QUEUED"] .count-n')).to_have_text("0")
        assert await page.evaluate("window.sameDocument") is True
        intermediate = [v for v in seen if 0 < v < PRODUCTS]
        assert len(intermediate) >= 2, f"the bar did not move in steps: {seen}"
        assert seen == sorted(seen), seen
        assert shot, "no screenshot of the running job was taken"

        # A filter is kept in the address; a job of another status is not listed under it.
        other_id = await queue_job(gql, "ARCHIVED")
        await page.locator('.count[data-status="SUCCEEDED"]').click()
        await expect(page).to_have_url(f"{server}/dashboard?status=SUCCEEDED")
        await expect(page.locator(".job-row[data-job-id]")).to_have_count(1)
        await page.reload()
        await expect(page.locator("#filter-status")).to_have_value("SUCCEEDED")
        await expect(page.locator(f'.job-row[data-job-id="{other_id}"]')).to_have_count(0)
        await expect(row).to_be_visible()
        await page.select_option("#filter-status", "")
        await expect(page.locator(f'.job-row[data-job-id="{other_id}"]')).to_be_visible()
        await page.screenshot(path=str(tmp_path / "list-desktop.png"), full_page=True)

        await page.set_viewport_size(PHONE)
        await expect(row).to_be_visible()
        await page.screenshot(path=str(tmp_path / "list-phone.png"), full_page=True)
        await page.close()
    watch.check()
