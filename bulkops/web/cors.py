"""Which browser origins may call the API: one rule for HTTP (Starlette's CORS middleware)
and for websocket handshakes (the GraphQL view's origin check)."""

from __future__ import annotations

import re

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from strawberry.http.websocket_origin import normalize_origin

from bulkops.config import Settings

# A frontend's dev server runs on some port of the developer's own machine.
DEV_ORIGIN_REGEX = r"http://(localhost|127\.0\.0\.1)(:[0-9]+)?"
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Apollo-Require-Preflight", "X-Request-ID")
# Long enough to spare a busy page most preflights; browsers cap it (Chromium: 2 hours).
MAX_AGE_SECONDS = 600


class OriginPolicy:
    """The origins of `BULKOPS_ALLOWED_ORIGINS` (`*` for any), and in dev mode any
    `http://localhost:*` or `http://127.0.0.1:*` origin."""

    def __init__(self, settings: Settings) -> None:
        self.origins = [o.rstrip("/") for o in settings.allowed_origins]
        self.regex = DEV_ORIGIN_REGEX if settings.dev else None
        self._pattern = re.compile(self.regex) if self.regex else None
        self._normalized = {normalize_origin(o) or o for o in self.origins}

    def allows(self, origin: str) -> bool:
        if "*" in self.origins:
            return True
        if self._pattern is not None and self._pattern.fullmatch(origin):
            return True
        normalized = normalize_origin(origin)
        return normalized is not None and normalized in self._normalized

    def middleware(self) -> Middleware:
        """CORS for every HTTP route: credentials allowed, so the origin is echoed back,
        never `*`; the `WWW-Authenticate` and `Retry-After` of a refusal stay readable, and a
        page may send its own `X-Request-ID` and read the one answered."""
        return Middleware(
            CORSMiddleware,
            allow_origins=self.origins,
            allow_origin_regex=self.regex,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=list(ALLOWED_HEADERS),
            allow_credentials=True,
            expose_headers=[
                "Retry-After",
                "WWW-Authenticate",
                "Content-Disposition",
                "X-Request-ID",
            ],
            max_age=MAX_AGE_SECONDS,
        )
