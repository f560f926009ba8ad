"""The API as the job commands reach it: GraphQL over HTTP with a bearer token. Every
failure becomes one line and an exit code (`ExitCode`), never a traceback."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from enum import IntEnum
from typing import Any

import httpx

from bulkops.config import Settings
from bulkops.dev.state import read_demo_token, running_dev
from bulkops.errors import BulkopsError


class ExitCode(IntEnum):
    """What the job and token commands exit with; `bulkops watch` adds the job outcomes."""

    OK = 0
    # The API answered, and said no: an unknown job, an action the job's status refuses.
    FAILED = 1
    # argparse's own code for a command line it cannot read.
    USAGE = 2
    TOKEN_REFUSED = 3
    UNREACHABLE = 4
    JOB_PARTIAL = 10
    JOB_FAILED = 11
    JOB_CANCELLED = 12


class CommandError(BulkopsError):
    """The command failed."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


TOKEN_REFUSED = "the token was refused"
# Sends of one rate-limited request before the command gives up.
RATE_LIMITED_TRIES = 3


def unreachable(url: str, reason: object) -> CommandError:
    return CommandError(
        f"cannot reach the API at {url} ({reason}); is `bulkops dev` or `bulkops serve` "
        "running there?",
        ExitCode.UNREACHABLE,
    )


def api_target(settings: Settings, url: str | None, token: str | None) -> tuple[str, str]:
    """The API's base URL and the token to send: the options first, then the settings
    (`BULKOPS_PUBLIC_URL`, `BULKOPS_TOKEN`), then the `bulkops dev` running on the data
    folder and its demo token (sent only to that dev's own API)."""
    dev = running_dev(settings.data_dir)
    if url is None:
        explicit = "public_url" in settings.model_fields_set
        url = settings.public_url if explicit or dev.api_url is None else dev.api_url
    url = url.rstrip("/")
    if token is None and settings.token is not None:
        token = settings.token.get_secret_value()
    if token is None and dev.api_url is not None and url == dev.api_url.rstrip("/"):
        token = read_demo_token(settings.data_dir)
    if not token:
        raise CommandError("give --token or set BULKOPS_TOKEN", ExitCode.USAGE)
    return url, token


class ApiClient:
    """Sends GraphQL documents to one API with one token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self._token = token
        self._timeout = timeout
        self._sleep = sleep

    def _post(self, query: str, variables: dict[str, Any] | None) -> httpx.Response:
        try:
            return httpx.post(
                f"{self.url}/graphql",
                json={"query": query, "variables": variables or {}},
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            )
        except httpx.HTTPError as exc:
            raise unreachable(self.url, type(exc).__name__ if not str(exc) else exc) from None

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of the answer; raises `CommandError` for anything else. A rate-limited
        request did nothing, so it is sent again after the wait the API names (a few times,
        each wait at most a minute)."""
        for attempt in range(RATE_LIMITED_TRIES):
            response = self._post(query, variables)
            if response.status_code != 429:
                break
            wait = _retry_after(response)
            if attempt + 1 < RATE_LIMITED_TRIES:
                self._sleep(wait)
        else:
            raise CommandError(f"too many requests; try again in {wait:g} s")
        if response.status_code == 401:
            raise CommandError(TOKEN_REFUSED, ExitCode.TOKEN_REFUSED)
        try:
            body = response.json()
        except ValueError:
            raise CommandError(
                f"{self.url} answered HTTP {response.status_code}, not GraphQL; is it "
                "the bulkops API?"
            ) from None
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            first = errors[0]
            code = (first.get("extensions") or {}).get("code")
            if code == "UNAUTHENTICATED":
                raise CommandError(TOKEN_REFUSED, ExitCode.TOKEN_REFUSED)
            if code == "FORBIDDEN":
                raise CommandError(
                    f"{TOKEN_REFUSED}: {first.get('message')}", ExitCode.TOKEN_REFUSED
                )
            raise CommandError(str(first.get("message", "the API answered an error")))
        data: dict[str, Any] = body["data"]
        return data


Handler = Callable[[argparse.Namespace, Settings], int]


def run(handler: Handler, args: argparse.Namespace, settings: Settings) -> int:
    """Run a command; a `CommandError` is one line on stderr and its exit code."""
    # Its INFO line for every request would drown the command's own output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        return handler(args, settings)
    except CommandError as exc:
        print(f"bulkops {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def add_target_options(parser: argparse.ArgumentParser) -> None:
    """--url and --token, the same on every command that calls the API."""
    parser.add_argument(
        "--url",
        default=None,
        help="the API's base URL (default: BULKOPS_PUBLIC_URL, else the running `bulkops dev`, "
        "else http://127.0.0.1:8000)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token (default: BULKOPS_TOKEN, else the running `bulkops dev`'s demo token)",
    )


def _retry_after(response: httpx.Response) -> float:
    """The wait a 429 names (Retry-After in seconds), within 1 s to a minute."""
    given = response.headers.get("Retry-After", "")
    try:
        seconds = float(given)
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 1.0), 60.0)
