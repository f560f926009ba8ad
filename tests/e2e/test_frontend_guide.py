"""docs/frontend.md's example code, run for real: its framework-free core and its React
hook (with the React build GraphiQL already vendors) in headless Chromium, against the real
app and a worker. The guide includes the example files verbatim; this checks that too."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
from playwright.async_api import Route, expect

from bulkops.config import Settings
from bulkops.storage import Storage
from tests.e2e.browser import LAPTOP, PageWatch, chromium
from tests.support import Tenant, make_products, run_worker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
GUIDE = ROOT / "docs" / "frontend.md"

# The page a frontend would be, here served by the test on the API's own origin. Bare
# imports ('graphql-ws', 'react') resolve to the vendored UMD builds' globals.
HARNESS = """<!doctype html>
<html><head><meta charset="utf-8">
<script src="/static/graphql-ws/graphql-ws.min.js"></script>
<script src="/static/graphiql/react.production.min.js"></script>
<script src="/static/graphiql/react-dom.production.min.js"></script>
<script type="importmap">{"imports": {
  "graphql-ws": "/guide/graphql-ws.js", "react": "/guide/react.js"}}</script>
</head><body><div id="root"></div><script type="module" src="/guide/run.js"></script></body></html>
"""
SHIMS = {
    "graphql-ws.js": "export const createClient = window.graphqlWs.createClient;",
    "react.js": "export const { createElement, useEffect, useState } = window.React;",
}
# The test's own page code: the core first, then the React component.
RUN = """
import { createBulkopsClient, readBulkResult, watchJob } from '/guide/bulkops-client.js';
import { ArchiveButton } from '/guide/use-job.js';

const params = new URLSearchParams(location.hash.slice(1));
const client = createBulkopsClient({ url: location.origin, token: params.get('token') });

window.core = (async () => {
  const data = await client.request(
    `mutation { setProductStatus(selection: {filter: {}}, status: ACTIVE,
       options: {mode: BACKGROUND}) { __typename ... on JobQueued { job { id } } } }`);
  const outcome = readBulkResult(data.setProductStatus);
  if (outcome.kind !== 'job') throw new Error('expected a job, got ' + outcome.kind);
  const states = [];
  window.coreJob = outcome.job.id;
  const last = await watchJob(client, outcome.job.id, (job) => states.push(job.status)).done;
  return { states, last };
})();

const root = ReactDOM.createRoot(document.getElementById('root'));
root.render(React.createElement(ArchiveButton, {
  client, selection: { filter: {} }, options: { mode: 'BACKGROUND' } }));
"""


def included_blocks(markdown: str) -> dict[str, str]:
    """The guide's code blocks that name their file on their first line."""
    blocks = re.findall(r"```js\n// docs/examples/(\S+)\n(.*?)```", markdown, re.S)
    return dict(blocks)


def test_the_guide_shows_the_example_files_verbatim() -> None:
    blocks = included_blocks(GUIDE.read_text())
    assert set(blocks) == {"bulkops-client.js", "use-job.js"}
    for name, body in blocks.items():
        assert body == (EXAMPLES / name).read_text(), f"docs/frontend.md's copy of {name} differs"


async def test_the_guides_core_and_react_hook_follow_jobs_to_their_end(
    server: str,
    owner: asyncpg.Connection,
    storage: Storage,
    tenant: Tenant,
    settings: Settings,
) -> None:
    await make_products(owner, storage, tenant, 1500, with_images=False)

    async def serve(route: Route) -> None:
        name = route.request.url.rsplit("/guide/", 1)[1]
        if name == "":
            await route.fulfill(body=HARNESS, content_type="text/html")
        elif name in SHIMS or name == "run.js":
            await route.fulfill(body=SHIMS.get(name, RUN), content_type="text/javascript")
        else:
            body = (EXAMPLES / name).read_text()
            await route.fulfill(body=body, content_type="text/javascript")

    # A page the test fulfills has no address of its own, so Chromium counts it as public
    # and would keep its websocket from reaching a loopback server; a real app's page is
    # served from an address like the API's.
    async with chromium(extra_args=("--disable-features=LocalNetworkAccessChecks",)) as browser:
        page = await browser.new_page(viewport=LAPTOP)
        watch = PageWatch().attach(page)
        await page.route(f"{server}/guide/**", serve)
        await page.goto(f"{server}/guide/#token={tenant.token}")
        await page.wait_for_function("window.coreJob")

        # The React component: its mutation answers a job, which it follows.
        await page.get_by_role("button", name="Archive").click()
        job = page.locator(".job")
        await expect(job).to_have_attribute("data-status", "QUEUED")

        await run_worker(settings.model_copy(update={"batch_size": 300}))
        core = await page.evaluate("window.core")
        assert core["last"]["status"] == "SUCCEEDED"
        assert core["last"]["processed"] == 1500
        assert core["states"][0] == "QUEUED" and core["states"][-1] == "SUCCEEDED"

        await expect(job).to_have_attribute("data-status", "SUCCEEDED", timeout=20_000)
        await expect(job).to_contain_text("1500 changed, 0 failed")
        await page.close()
    watch.check()
