"""Reading what a provider answered: bodies read within a size limit, the provider's own
error message, and what a failed attempt means (a `retries.Failure`) or, once the call
has failed for good, which CallFailed it ends in."""

from __future__ import annotations

import json
from typing import Any

import httpx

from bulkops.outside import retries
from bulkops.outside.errors import CallFailed

# An answer to send_json (a chat completion is a few kB).
MAX_JSON_BYTES = 16 * 1024 * 1024
# Of an error answer, enough for its message.
ERROR_BODY_BYTES = 64 * 1024
# Of a provider's message, what an item error shows.
MAX_MESSAGE_CHARS = 300

# Describe the body httpx received, not the decoded one a read response holds.
_WIRE_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


class Answered(Exception):
    """An attempt got an answer that is not a 2xx (its body read, within a limit)."""

    def __init__(self, response: httpx.Response, body: bytes) -> None:
        self.status = response.status_code
        self.headers = response.headers
        phrase = f"{response.status_code} {response.reason_phrase}".strip()
        said = provider_message(body)
        self.message = f"{phrase}: {said}" if said else phrase
        super().__init__(self.message)


async def read_capped(response: httpx.Response, limit: int, *, too_large: bool = False) -> bytes:
    """The response's body, decoded. Past `limit` bytes: CallFailed TOO_LARGE when
    `too_large`, else the first `limit` bytes."""
    declared = response.headers.get("content-length", "")
    if too_large and declared.isdigit() and int(declared) > limit:
        raise _too_large(response, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if too_large:
                raise _too_large(response, limit)
            chunks.append(chunk[: len(chunk) - (size - limit)])
            break
        chunks.append(chunk)
    return b"".join(chunks)


async def read_response(response: httpx.Response, limit: int) -> httpx.Response:
    """A streamed response, read whole (CallFailed TOO_LARGE past `limit`) into a
    response that needs no more reading."""
    content = await read_capped(response, limit, too_large=True)
    headers = [(k, v) for k, v in response.headers.multi_items() if k not in _WIRE_HEADERS]
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=content,
        request=response.request,
        extensions=response.extensions,
    )


def _too_large(response: httpx.Response, limit: int) -> CallFailed:
    return CallFailed(
        f"the answer is larger than {limit} bytes", code="TOO_LARGE", status=response.status_code
    )


def provider_message(body: bytes) -> str:
    """The message a provider put in an error answer: OpenAI's `error.message`, or
    `error`, `message`, `detail`; else the body's text. Cut to `MAX_MESSAGE_CHARS`."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        for key in ("error", "message", "detail"):
            value = parsed.get(key)
            if isinstance(value, dict):
                value = value.get("message")
            if isinstance(value, str) and value.strip():
                text = value.strip()
                break
    text = " ".join(text.split())
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 1] + "…"
    return text


def media_type(content_type: str | None) -> str | None:
    """`image/png` of `image/png; charset=binary`."""
    if not content_type:
        return None
    value = content_type.split(";", 1)[0].strip().lower()
    return value or None


def failure_of(exc: BaseException, *, timeout_seconds: float) -> retries.Failure | None:
    """What a failed attempt means, or None when `exc` is no outcome of a call (raise it
    as it is). A URL httpx cannot send to, or an answer it cannot decode, fails the call
    for good (raised here as CallFailed)."""
    if isinstance(exc, Answered):
        return retries.status_failure(exc.status, exc.headers, exc.message)
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return retries.timeout_failure(f"no answer within {timeout_seconds:g} s")
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        raise CallFailed(f"not a URL that can be called: {exc}", code="INVALID_URL") from exc
    if isinstance(exc, httpx.DecodingError):
        raise CallFailed(f"the answer could not be decoded: {exc}", code="BAD_ANSWER") from exc
    if isinstance(exc, httpx.TransportError):
        return retries.connection_failure(str(exc) or type(exc).__name__)
    return None


def give_up(
    provider: str, failure: retries.Failure, *, failed_code: str, not_found: bool
) -> CallFailed:
    """The CallFailed a call ends in once `failure` is its last attempt."""
    if failure.kind == "timeout":
        code = "TIMEOUT"
    elif failure.kind == "connection":
        code = "UNREACHABLE"
    elif failure.rate_limited:
        code = "RATE_LIMITED"
    elif not_found and failure.status in (404, 410):
        code = "NOT_FOUND"
    else:
        code = failed_code
    return CallFailed(f"{provider}: {failure.message}", code=code, status=failure.status)
