"""The live jobs dashboard: one static page for `/dashboard` and its job pages, and `/`
sending people there.

The page is plain HTML, CSS and JavaScript modules under /static/dashboard/ (no build
step); it signs in with a bearer token held by the browser and talks to /graphql like any
other client, so these routes need no token themselves.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from bulkops.web.graphql_view import STATIC_DIR

PAGE = STATIC_DIR / "dashboard.html"


async def dashboard(request: Request) -> Response:
    # The page's JavaScript reads the path and query itself; every path serves the same file.
    return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


async def home(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=307)


def routes() -> list[Route]:
    return [
        Route("/", home),
        Route("/dashboard", dashboard),
        Route("/dashboard/jobs/{job_id}", dashboard),
        Route("/dashboard/webhooks", dashboard),
    ]
