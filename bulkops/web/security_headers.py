"""Security headers on every HTTP response, and a Content-Security-Policy for HTML pages
(GraphiQL, the dashboard) that allows only what bulkops serves itself."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The pages (GraphiQL, the dashboard): their scripts and styles are files under /static; they
# talk to /graphql over fetch and a websocket ('self' covers ws: and wss: of the same host in
# CSP Level 3 browsers; the browser tests follow subscriptions under this policy), and
# GraphiQL's stylesheet embeds its icons and fonts as data: URLs.
PAGE_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
# Anything else (JSON, CSV, stored images such as SVG) runs nothing if opened as a page.
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """ASGI middleware adding `HEADERS` and a Content-Security-Policy to every HTTP
    response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                html = headers.get("content-type", "").startswith("text/html")
                headers.setdefault("Content-Security-Policy", PAGE_POLICY if html else OTHER_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
