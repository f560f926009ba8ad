"""A GraphQL request over HTTP, read and checked before Strawberry sees it.

Strawberry reads a body whole and trusts its shape; what it cannot read it answers with a
server error. Here a JSON body is read as it arrives and refused past `max_request_bytes`
whatever its framing (a chunked body announces no length), decoded as strict UTF-8, and
parsed as JSON without NaN, Infinity or numbers out of range. The result, like a
GET's query parameters and an upload's `operations` field, must be one GraphQL request:
an object with a `query` string no longer than `max_query_bytes`, `variables` an object or
null (holding no string that cannot be stored, nested at most so deep:
`bulkops.graphql.limits.check_variables`), `operationName` a string (storable too) or null and
`extensions` an object or null. An upload's `map` must send file parts to places in
`operations`' variables."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.types import Message, Receive

from bulkops.errors import InputError
from bulkops.graphql.limits import UNSTORABLE_MESSAGE, check_variables, unstorable


class BadRequest(InputError):
    """The request is not a GraphQL request this API reads."""

    code = "BAD_REQUEST"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        field: list[str] | None = None,
        status: int = 400,
    ) -> None:
        super().__init__(message, code=code, field=field)
        self.status = status


async def read_body(receive: Receive, *, limit: int) -> bytes | None:
    """The body, read chunk by chunk; None when the client went away first. Raises
    BadRequest (413, `REQUEST_TOO_LARGE`) as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BadRequest(
                f"The request may be at most {limit} bytes.", code="REQUEST_TOO_LARGE", status=413
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` again, then whatever the client sends next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def check_json_body(body: bytes, *, max_query_bytes: int) -> None:
    """Raise BadRequest unless `body` is one GraphQL request as JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("The body is not valid UTF-8.") from None
    check_request(parse_json(text, "The body"), max_query_bytes=max_query_bytes)


def check_query_params(params: Mapping[str, str], *, max_query_bytes: int) -> None:
    """Raise BadRequest unless a GET's query parameters are one GraphQL request, read as
    Strawberry reads them (`variables` and `extensions` as JSON, when not empty)."""
    request: dict[str, Any] = dict(params)
    for name in ("variables", "extensions"):
        if request.get(name):
            request[name] = parse_json(request[name], f"`{name}`", field=[name])
    check_request(request, max_query_bytes=max_query_bytes)


def check_multipart(form: FormData, *, max_query_bytes: int) -> None:
    """Raise BadRequest unless an upload's `operations` is one GraphQL request and its `map`
    sends file parts to places in the variables (GraphQL multipart request spec)."""
    operations = form.get("operations")
    if not isinstance(operations, str):
        raise BadRequest(
            "An upload needs an `operations` form field holding the request as JSON.",
            field=["operations"],
        )
    request = parse_json(operations, "`operations`", field=["operations"])
    check_request(request, max_query_bytes=max_query_bytes, field=["operations"])
    files_map = form.get("map", "{}")
    if not isinstance(files_map, str):
        raise BadRequest("`map` must be a form field, not a file.", field=["map"])
    parsed = parse_json(files_map, "`map`", field=["map"])
    if not isinstance(parsed, dict):
        raise BadRequest("`map` must be a JSON object of file parts to paths.", field=["map"])
    for part, paths in parsed.items():
        if not isinstance(form.get(part), UploadFile):
            raise BadRequest(f"`map` names {part!r}, which is not a file part.", field=["map"])
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise BadRequest(
                f"`map` must give a list of paths (strings) for {part!r}.", field=["map"]
            )
        for path in paths:
            if not _is_variable_slot(request, path):
                raise BadRequest(
                    f"`map` path {path!r} names no place in the variables of `operations`.",
                    field=["map"],
                )


def _is_variable_slot(request: dict[str, Any], path: str) -> bool:
    """Whether Strawberry can put a file at `path` ("variables.upload", "variables.files.0")."""
    *parents, last = path.split(".")
    if not parents or parents[0] != "variables":
        return False
    target: Any = request
    for key in parents:
        if isinstance(target, dict) and key in target:
            target = target[key]
        elif isinstance(target, list) and _index(key, target) is not None:
            target = target[int(key)]
        else:
            return False
    if isinstance(target, list):
        return _index(last, target) is not None
    return isinstance(target, dict)


def _index(key: str, items: list[Any]) -> int | None:
    if key.isascii() and key.isdigit() and int(key) < len(items):
        return int(key)
    return None


def check_request(request: Any, *, max_query_bytes: int, field: list[str] | None = None) -> None:
    """Raise BadRequest unless `request` (decoded JSON) is one GraphQL request; `field`
    prefixes the names of its parts in errors (an upload's `["operations"]`)."""
    prefix = field or []
    if not isinstance(request, dict):
        raise BadRequest(
            "A GraphQL request is a JSON object with a `query` string.", field=prefix or None
        )
    query = request.get("query")
    if not isinstance(query, str):
        raise BadRequest("`query` must be a string.", field=[*prefix, "query"])
    if len(query) > max_query_bytes or len(query.encode(errors="surrogatepass")) > max_query_bytes:
        raise BadRequest(
            f"The query may be at most {max_query_bytes} bytes.",
            code="QUERY_TOO_LARGE",
            field=[*prefix, "query"],
            status=413,
        )
    for name, kind, described in (
        ("operationName", str, "a string"),
        ("variables", dict, "an object"),
        ("extensions", dict, "an object"),
    ):
        value = request.get(name)
        if value is not None and not isinstance(value, kind):
            raise BadRequest(f"`{name}` must be {described} or null.", field=[*prefix, name])
    operation_name = request.get("operationName")
    # Strawberry names an unknown operation in its answer, which must encode as UTF-8.
    if isinstance(operation_name, str) and unstorable(operation_name):
        raise BadRequest(UNSTORABLE_MESSAGE, field=[*prefix, "operationName"])
    variables = request.get("variables")
    if variables:
        try:
            check_variables(variables)
        except InputError as error:
            raise BadRequest(error.message, code=error.code, field=error.field) from None


def parse_json(text: str, what: str, *, field: list[str] | None = None) -> Any:
    """`text` as JSON, or BadRequest naming `what` (and `field`)."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise BadRequest(f"{what} nests too deeply to be read.", field=field) from None
    except ValueError as error:
        # JSONDecodeError, and the numbers refused below or too long to convert.
        raise BadRequest(f"{what} is not valid JSON: {error}", field=field) from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number is too large")
    return number
