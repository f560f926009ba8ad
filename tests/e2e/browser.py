"""Debian's headless Chromium driven by Playwright's async API, for tests that also run the
real app (uvicorn on the test's event loop, as the `server` fixture does): the sync API
cannot run inside that loop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright

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
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 860}


@asynccontextmanager
async def chromium(*, extra_args: tuple[str, ...] = ()) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageWatch:
    """What a page did that a test should refuse: script errors, Content-Security-Policy
    refusals, and requests that left this machine."""

    errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> PageWatch:
        def on_console(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text:
                self.refused.append(message.text)

        page.on("console", on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("request", lambda request: self.requested.append(request.url))
        page.on("websocket", lambda ws: self.requested.append(ws.url))
        return self

    def check(self) -> None:
        assert not self.errors, f"the page threw: {self.errors}"
        assert not self.refused, (
            f"the Content-Security-Policy blocked part of the page: {self.refused}"
        )
        outside = [
            url
            for url in self.requested
            if urlsplit(url).scheme not in {"data", "blob", "about"}
            and urlsplit(url).hostname not in LOCAL_HOSTS
        ]
        assert not outside, f"the page reached beyond localhost: {outside}"
