"""Streamed downloads that hold a database connection while the client reads: a cap on
how many run at once, and a response that always closes its stream."""

from __future__ import annotations

import anyio
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from bulkops.services.copy_stream import CopyStream
from bulkops.web.responses import error_response


class DownloadSlots:
    """At most `limit` downloads of one kind at once: each holds a pool connection for as
    long as its client reads, so more get 429 and the rest of the API keeps its
    connections."""

    def __init__(self, *, limit: int, code: str, noun: str) -> None:
        self.limit = max(1, limit)
        self.running = 0
        self.code = code
        self.noun = noun

    def refusal(self) -> Response | None:
        """The 429 to answer when every slot is taken, else None."""
        if self.running < self.limit:
            return None
        return error_response(
            429,
            f"{self.limit} {self.noun} are already running; try again shortly.",
            self.code,
            headers={"Retry-After": "5"},
        )

    def take(self) -> None:
        self.running += 1

    def release(self) -> None:
        self.running -= 1


class CopyResponse(StreamingResponse):
    """Streams a CopyStream and always closes it, however the response ends."""

    def __init__(self, stream: CopyStream, *, media_type: str, headers: dict[str, str]) -> None:
        self.stream = stream
        self.chunks = stream.chunks()
        super().__init__(self.chunks, media_type=media_type, headers=headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ClientDisconnect:
            # ASGI 2.4 servers report a client gone mid-stream this way: nothing to answer.
            pass
        finally:
            # Shielded: a disconnect cancels the response's scope, and the COPY must still
            # be stopped and its connection returned before this request is over.
            with anyio.CancelScope(shield=True):
                await self.chunks.aclose()
                await self.stream.aclose()
