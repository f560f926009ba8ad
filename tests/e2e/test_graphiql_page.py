"""The GraphiQL page at GET /graphql, in a real (headless Debian) Chromium, with no internet.

The page must load only what bulkops serves itself (the vendored assets under
bulkops/static/graphiql/), pick the bearer token up from the URL fragment, and introspect the
real schema, under the app's Content-Security-Policy. The server here is a small Starlette app
around the real schema and the app's security headers: no database, so resolvers that touch
one fail, which does not matter for the page itself.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, expect, sync_playwright
from playwright.sync_api import Request as BrowserRequest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from strawberry.asgi import GraphQL

import bulkops
from bulkops.graphql.schema import build_schema
from bulkops.web.security_headers import SecurityHeaders

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
STATIC_DIR = Path(bulkops.__file__).parent / "static"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
)


def _app() -> Starlette:
    async def graphiql_page(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "graphiql.html", media_type="text/html")

    return Starlette(
        routes=[
            Route("/graphql", graphiql_page, methods=["GET"]),
            Route("/graphql", GraphQL(build_schema(dev=True)), methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=[Middleware(SecurityHeaders)],
    )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(_app(), lifespan="off", ws="none", log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


def test_graphiql_page_works_offline_with_the_token_from_the_url(
    base_url: str, browser: Browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    requested: list[str] = []
    authorizations: list[str | None] = []
    page_errors: list[str] = []
    refused: list[str] = []

    def on_request(request: BrowserRequest) -> None:
        requested.append(request.url)
        if request.method == "POST" and urlsplit(request.url).path == "/graphql":
            authorizations.append(request.headers.get("authorization"))

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            refused.append(message.text)

    page.on("request", on_request)
    page.on("websocket", lambda ws: requested.append(ws.url))
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.on("console", on_console)
    try:
        response = page.goto(f"{base_url}/graphql#token=abc123")
        assert response is not None
        assert "script-src 'self'" in response.headers["content-security-policy"]

        # The editor renders, with the example query and the token in the headers editor.
        expect(page.locator(".graphiql-container")).to_be_visible()
        expect(page.locator(".graphiql-query-editor .CodeMirror-code")).to_contain_text(
            "inlineThreshold"
        )
        headers_editor = page.locator(
            ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror-code"
        )
        expect(headers_editor).to_contain_text('"Authorization": "Bearer abc123"')
        assert "abc123" not in page.url, "the token stays out of the address bar"

        # Introspection worked: the docs explorer shows the Query type and its fields.
        page.get_by_role("button", name="Show Documentation Explorer").click()
        docs = page.locator(".graphiql-doc-explorer")
        expect(docs).to_contain_text("Root Types")
        docs.locator("a.graphiql-doc-explorer-type-name", has_text="Query").first.click()
        expect(page.locator(".graphiql-doc-explorer-title")).to_have_text("Query")
        expect(docs).to_contain_text("operations")
        expect(docs).to_contain_text("products")

        # The token from the headers editor goes with the requests GraphiQL makes.
        assert authorizations
        assert set(authorizations) == {"Bearer abc123"}

        # Running the example query reaches the server and shows its answer.
        page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
        expect(page.locator(".graphiql-response .CodeMirror-code")).to_contain_text("errors")
        page.screenshot(path=str(tmp_path / "graphiql.png"))

        # A reload, without the fragment, keeps the token (it is kept in localStorage).
        page.goto(f"{base_url}/graphql")
        expect(page.locator(".graphiql-container")).to_be_visible()
        expect(headers_editor).to_contain_text('"Authorization": "Bearer abc123"')
        assert headers_editor.inner_text().count("abc123") == 1
    finally:
        context.close()

    assert not page_errors
    assert not refused, f"the Content-Security-Policy blocked part of the page: {refused}"
    outside = [
        url
        for url in requested
        if urlsplit(url).scheme not in {"data", "blob", "about"}
        and urlsplit(url).hostname not in LOCAL_HOSTS
    ]
    assert not outside, f"the page reached beyond localhost: {outside}"
    assert any(urlsplit(url).path == "/static/graphiql/graphiql.min.js" for url in requested)
