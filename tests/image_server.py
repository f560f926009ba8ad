"""A real HTTP server of images for the tests of fetchProductImages: PNG, JPEG, GIF and
WebP bodies, and the answers a download must survive (a 404, a slow answer, a body larger
than any limit, an HTML page that calls itself an image, a redirect).

In a test it runs on a loopback port in the test's event loop (`await server.start()`);
standalone it serves for benchmarks, every answer delayed by `--latency` seconds:

    python -m tests.image_server --port 8900 --latency 0.05

Paths: /img/NAME.png (a PNG; a 404 for a NAME in `gone`), /img/NAME.jpg, /img/NAME.gif,
/img/NAME.webp, /missing.png (404), /slow.png (a PNG after `slow_seconds`), /huge.png
(`huge_bytes` of PNG-looking bytes, streamed), /page.html (HTML), /fake.png (HTML sent as
image/png), /redirect/NAME.png (302 to /img/NAME.png)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import socket
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.serving import QuickServer


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A real PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = png()
# Small real images (16 x 16 pixels), from CPython's test data.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQEAAQABAAD/2wBDAAMCAgICAgMCAgIDAwMDBAYEBAQEBAgGBgUGCQgKCgkICQkK"
    "DA8MCgsOCwkJDRENDg8QEBEQCgwSExIQEw8QEBD/2wBDAQMDAwQDBAgEBAgQCwkLEBAQEBAQEBAQEBAQ"
    "EBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBD/wAARCAAQABADASIAAhEBAxEB/8QA"
    "FgABAQEAAAAAAAAAAAAAAAAABwQF/8QAJBAAAQQBBAICAwAAAAAAAAAAAQIDBAYFBwgSExEiABQJMTL/"
    "xAAVAQEBAAAAAAAAAAAAAAAAAAAABv/EACMRAAECBQMFAAAAAAAAAAAAAAECEQMEBQYhABIxFRZhgeH/"
    "2gAMAwEAAhEDEQA/ABSm0mobc8HmExLUlRzzEWPkJWW+ulrsaUVAseUgslSlH9LKuPryIKuWPZdskzXm"
    "m3fX5m2nF4GlVxx/HOpx4ks51+MiU/Iaad7UcUo4tILoS4kqcWkezS0hO/HvuRp0rO6hWnWO1UisZVuF"
    "i4GFeyEpmGepa5S5SWVPuciFKRFLgSrwetnyPIB+Vb4N9mKhQMzo5po9XLdDs9d6ZVix2VEhiL9kuNPx"
    "w2gEKcDQ/rs8AuA8VAe0vdl7VOYn+27flGAUgmITjbhSmCg3BYlyeWDkMolvw4KOp1KM6iCNvngZHwet"
    "f//Z"
)
GIF = base64.b64decode(
    "R0lGODlhEAAQAPU/AOu7GOu+IfPBGvrHGf3LG//MHOvCKv/PI//PJP/QJf/TLevFNOjHPf/TMP/UMP3V"
    "NvrTOf/XOfnVPv/YOuzORf/aQf/bRP/eS//fTv/iVf/jWP/nYvLhbvXjb/3pav/rbDJghzZmkDZnkTZp"
    "kzdoljdqljlsljpvmzpwnDtwnDxxnj1zoj50oj92pUB4pkJ7qkN8q0N9rUV/r0aAsUeBskiDtEiFtkqG"
    "ukyJvEyKvEyKv0+NwVCPw1KRxv///wAAACH/C0ltYWdlTWFnaWNrB2dhbW1hPTAAIfkEBQAAPwAsAAAA"
    "ABAAEAAABpvAn/C3u81iLRVpyBTmfLMXC1VqMm1RVqo0sv50thjLFDKVqszeDleTuVSn0fmXuUh+PB1N"
    "9oKP/iA/FxUPXzY0UipnIoEUhAo/hzAuXU0VEQoHP0cuIj8cHhsZGBUTCggEPzFSPx0fGxoYFhENCAUC"
    "QispP6+xpacFBVawGAwLBgEAAF6xsw0Jwl4/shEOCT6p0j8QzwUD2uBDQQA7"
)
WEBP = base64.b64decode(
    "UklGRqgBAABXRUJQVlA4WAoAAAAQAAAADwAADwAAQUxQSMMAAAABJ6KokSTleucYX+ffKpmImP90cY3g"
    "JjDi4Yt3MsjBEVyDKzDosHgVjnhRNcEIDAJPkqBqsFUZHNa2bUYvTsZ2PLbtd/uvKa4hov9J0f2PkPe6"
    "REkkGzolkTTzFG0Ox9PlFiD0CxS+kOGDtxoynjaCfx0pfk52CPuInrOR75lzRugygtv4zEiy90UwfSD9"
    "NheMITJWLaXWayO8XeOlWRXVnIGk2W6WdYoYMQ+KqixQNPowgt+6a1BSKbUtz+lUFAoBAAAAVlA4IL4A"
    "AACQAgCdASoQABAAAwA0JbACdDBPCIUMfAMdCCz96AD+/XSg/QKbH4r3Q3ycN/bSDK/T/zVo4u6nvclv"
    "G/SqxWOuup+XhN9BojvaW+Tv+MvxvX/hr/o/5Qns9LtmX/+qKdl/yWznhuasl7nkxvSTI4xf3Y85VSB/"
    "lU/8Ofj/b9JrA+ifvIOYZm2x1RP/dhfmsf5diuSfR7+z+r/+HR3zEo/+XM/B+vkYw73Pzx+ROaAB/ZoB"
    "SzEs3rzZe6qsAAAA"
)
HTML = b"<!doctype html><html><head><title>Not here</title></head><body>Gone.</body></html>"
IMAGES = {
    "png": (PNG, "image/png"),
    "jpg": (JPEG, "image/jpeg"),
    "gif": (GIF, "image/gif"),
    "webp": (WEBP, "image/webp"),
}


class ImageServer:
    """Serves the paths above on a loopback port (or `host`/`port` given). `requests`
    counts the requests by path; `latency` delays every answer."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        latency: float = 0.0,
        slow_seconds: float = 5.0,
        huge_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.host = host
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.huge_bytes = huge_bytes
        self.requests: Counter[str] = Counter()
        # Names under /img/ that answer 404 for now.
        self.gone: set[str] = set()
        self._server: QuickServer | None = None
        self._task: asyncio.Task[None] | None = None
        # Set when the server stops: a slow answer still sleeping ends then, instead of
        # holding the stop until its time is up.
        self._stopping = asyncio.Event()
        if port is None:
            with socket.socket() as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
        self.port = port

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/img/{name}.{ext}", self._image),
                Route("/missing.png", self._missing),
                Route("/slow.png", self._slow),
                Route("/huge.png", self._huge),
                Route("/page.html", self._page),
                Route("/fake.png", self._fake),
                Route("/redirect/{name}.png", self._redirect),
            ]
        )

    async def _answer(self, request: Request) -> None:
        self.requests[request.url.path] += 1
        if self.latency:
            await asyncio.sleep(self.latency)

    async def _image(self, request: Request) -> Response:
        await self._answer(request)
        found = IMAGES.get(request.path_params["ext"])
        if found is None or request.path_params["name"] in self.gone:
            return Response(b"Not found.", status_code=404, media_type="text/plain")
        body, media_type = found
        return Response(body, media_type=media_type)

    async def _missing(self, request: Request) -> Response:
        await self._answer(request)
        return Response(HTML, status_code=404, media_type="text/html")

    async def _slow(self, request: Request) -> Response:
        await self._answer(request)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.slow_seconds)
        return Response(PNG, media_type="image/png")

    async def _huge(self, request: Request) -> Response:
        await self._answer(request)
        block = PNG + bytes(64 * 1024 - len(PNG))

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            while sent < self.huge_bytes:
                yield block
                sent += len(block)

        # No Content-Length: the limit must hold while the body streams.
        return StreamingResponse(body(), media_type="image/png")

    async def _page(self, request: Request) -> Response:
        await self._answer(request)
        return Response(HTML, media_type="text/html")

    async def _fake(self, request: Request) -> Response:
        await self._answer(request)
        return Response(HTML, media_type="image/png")

    async def _redirect(self, request: Request) -> Response:
        await self._answer(request)
        return RedirectResponse(f"/img/{request.path_params['name']}.png", status_code=302)

    async def start(self) -> None:
        config = uvicorn.Config(self.app(), host=self.host, port=self.port, log_level="warning")
        self._stopping.clear()
        self._server = QuickServer(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._stopping.set()
        self._server.stop()
        done, _ = await asyncio.wait({self._task}, timeout=5)
        if not done:
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--huge-bytes", type=int, default=64 * 1024 * 1024)
    args = parser.parse_args()
    server = ImageServer(
        host=args.host,
        port=args.port,
        latency=args.latency,
        slow_seconds=args.slow_seconds,
        huge_bytes=args.huge_bytes,
    )
    uvicorn.run(server.app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
