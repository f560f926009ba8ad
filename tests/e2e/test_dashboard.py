"""The live dashboard at /dashboard in headless Chromium, against the real app and a real
worker: sign in, watch a background job's bar move to SUCCEEDED without a reload, act on a
job from its page (no actions for a read-only user), and the same pages on a phone.
Screenshots go to each test's tmp_path."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import asyncpg
import httpx
from playwright.async_api import Dialog, Page, expect

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.api.test_import_products import HEADER, import_file
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
    storage: Storage,
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


async def test_a_job_is_paused_resumed_and_cancelled_from_its_page(
    server: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    await make_products(owner, storage, tenant, PRODUCTS, with_images=False)
    job_id = await queue_job(gql)
    async with chromium() as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        dialogs: list[str] = []

        async def accept(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            await dialog.accept()

        page.on("dialog", accept)
        # A token in the fragment signs in, as for GraphiQL, and leaves the address bar.
        await page.goto(f"{server}/dashboard/jobs/{job_id}#token={tenant.token}")
        status = page.locator("#job-status")
        await expect(status).to_have_text("Queued")
        assert tenant.token not in page.url
        await expect(page.locator(".stats")).to_contain_text("2,400")
        await page.screenshot(path=str(tmp_path / "job-queued.png"), full_page=True)

        await page.get_by_role("button", name="Pause").click()
        await expect(status).to_have_text("Paused")
        await page.get_by_role("button", name="Resume").click()
        await expect(status).to_have_text("Queued")
        await page.get_by_role("button", name="Cancel").click()
        await expect(status).to_have_text("Cancelled")
        await expect(page.locator(".actions button")).to_have_count(0)
        assert (await gql(JOB, {"id": job_id}))["job"]["status"] == "CANCELLED"
        assert len(dialogs) == 3 and "Cancel this job?" in dialogs[-1]

        # Dismissing the confirmation does nothing.
        second = await queue_job(gql)
        page.remove_listener("dialog", accept)
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
        await page.get_by_role("link", name="← All jobs").click()
        await page.locator(f'.job-row[data-job-id="{second}"]').click()
        await expect(status).to_have_text("Queued")
        await page.get_by_role("button", name="Cancel").click()
        await page.wait_for_timeout(300)
        assert (await gql(JOB, {"id": second}))["job"]["status"] == "QUEUED"

        await page.set_viewport_size(PHONE)
        await page.screenshot(path=str(tmp_path / "job-phone.png"), full_page=True)
        await page.close()
    watch.check()


async def test_a_read_only_user_sees_jobs_but_no_actions(
    server: str,
    gql: GraphQLClient,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    # The command an operator runs for a read-only token.
    cli = "import sys; from bulkops.cli import main; main(sys.argv[1:])"
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-c", cli, "token", "create", "--tenant", tenant.name, "--scope", "read"],
        env={
            **os.environ,
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
        },
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    read_token = out.decode().strip().splitlines()[-1]
    await make_products(owner, storage, tenant, 50, with_images=False)
    job_id = await queue_job(gql)

    async with chromium() as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        await sign_in(page, server, read_token)
        await expect(page.locator(".who")).to_contain_text("read only")
        await page.locator(f'.job-row[data-job-id="{job_id}"]').click()
        await expect(page.locator("#job-status")).to_have_text("Queued")
        await expect(page.locator(".actions button")).to_have_count(0)
        await page.screenshot(path=str(tmp_path / "job-read-only.png"), full_page=True)
        await page.close()
    watch.check()


async def test_a_partial_jobs_page_lists_and_downloads_its_errors(
    server: str,
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    tenant: Tenant,
    settings: Settings,
    tmp_path: Path,
) -> None:
    good = [f"G-{i},Good {i},,Acme,,ACTIVE,1.00,,,\n" for i in range(20)]
    bad = [f"B-{i},Bad {i},,Acme,,ACTIVE,-{i},,,\n" for i in range(1, 31)]
    queued = await import_file(
        http, tenant, (HEADER + "\n" + "".join(good + bad)).encode(), options={"mode": "BACKGROUND"}
    )
    job_id = queued["job"]["id"]
    await run_worker(settings)

    async with chromium() as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await sign_in(page, server, tenant.token)
        await page.goto(f"{server}/dashboard#job={job_id}")
        await expect(page.locator("#job-status")).to_have_text("Partial")
        await expect(page.locator(".stat-failed dd")).to_have_text("30")
        await expect(page.locator(".recent-errors tbody tr").first).to_contain_text("INVALID_PRICE")

        # The paged list: 25 a page.
        errors = page.locator(".error-list")
        await expect(errors.locator("tbody tr")).to_have_count(25)
        await expect(errors.locator(".pager")).to_contain_text("1\u201325 of 30")
        await errors.get_by_role("button", name="Next →").click()
        await expect(errors.locator("tbody tr")).to_have_count(5)
        await expect(errors.locator(".pager")).to_contain_text("26\u201330 of 30")
        await page.screenshot(path=str(tmp_path / "job-partial.png"), full_page=True)

        # The CSV comes with the bearer token and is saved as a file.
        async with page.expect_download() as downloading:
            await page.get_by_role("button", name="Errors (CSV)").click()
        saved = await downloading.value
        assert saved.suggested_filename == f"job-{job_id}-errors.csv"
        path = tmp_path / saved.suggested_filename
        await saved.save_as(path)
        lines = path.read_text().splitlines()
        assert lines[0] == "item_id,row,column,code,message"
        assert len(lines) == 31

        # An import's rows are gone once it ends: the server refuses, and the page says why.
        await page.get_by_role("button", name="Retry failed items").click()
        await expect(page.get_by_role("alert")).to_contain_text("cannot be retried")
        await expect(page.locator("#connection")).to_have_text("Live")
        await page.close()
    watch.check()
