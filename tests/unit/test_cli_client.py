"""The job commands' API client against a real HTTP server: a rate-limited request is sent
again after the wait the API names, and given up with a clear error when it stays limited."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bulkops.commands.client import RATE_LIMITED_TRIES, ApiClient, CommandError


class Limited(BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 2) to the first `limited` requests, then a GraphQL answer."""

    limited = 0
    seen = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen += 1
        if type(self).seen <= type(self).limited:
            body = json.dumps({"errors": [{"extensions": {"code": "RATE_LIMITED"}}]}).encode()
            self.send_response(429)
            self.send_header("Retry-After", "2")
        else:
            body = json.dumps({"data": {"viewer": {"tenant": "acme"}}}).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    Limited.seen = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Limited)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_rate_limited_request_is_sent_again_after_the_named_wait(api: str) -> None:
    Limited.limited = 1
    waits: list[float] = []
    client = ApiClient(api, "bko_token", sleep=waits.append)
    assert client.execute("{ viewer { tenant } }") == {"viewer": {"tenant": "acme"}}
    assert waits == [2.0]
    assert Limited.seen == 2


def test_a_request_that_stays_limited_is_given_up_with_the_wait(api: str) -> None:
    Limited.limited = 100
    waits: list[float] = []
    client = ApiClient(api, "bko_token", sleep=waits.append)
    with pytest.raises(CommandError, match="too many requests; try again in 2 s"):
        client.execute("{ viewer { tenant } }")
    assert Limited.seen == RATE_LIMITED_TRIES
    assert waits == [2.0] * (RATE_LIMITED_TRIES - 1)
