"""Log lines: JSON in production, readable text in dev, configured once at process start.

Built on the standard library's `logging` rather than structlog: every module here, and
uvicorn, arq and asyncpg, already log through it, and the tests read its records. A
filter on the one handler stamps each record with what the running task is doing (the
job's `job_id`, `tenant_id` and `operation`; the HTTP request's `request_id`), read from
context variables, so the lines of libraries carry them too."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from bulkops.config import Settings

# What the running task is doing: set when a job's slice or an HTTP request starts. Each
# arq job and each request runs in a task of its own, which copies the context, so a value
# set there ends with the task.
_context: contextvars.ContextVar[tuple[tuple[str, str], ...]] = contextvars.ContextVar(
    "bulkops_log_context", default=()
)
CONTEXT_FIELDS = ("request_id", "job_id", "tenant_id", "operation")
# Once per job and per scheduled task, arq logs when it starts and ends it, with the
# priority head start shown as `delayed=3600.04s`; httpx logs a line for every outside
# call (each image a job fetches: formatting and writing those lines cost the worker more
# than its limiter, and they show the URLs, signed ones included). At WARNING only their
# failures remain; BULKOPS_LOG_LEVEL=DEBUG brings them back.
QUIET_LOGGERS = {"arq.worker": logging.WARNING, "httpx": logging.WARNING}
# The attributes every record has; anything else on a record was passed as `extra`, but
# for uvicorn's copy of its message with terminal colours.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


def _with(fields: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple({**dict(_context.get()), **fields}.items())


def bind(**fields: str) -> None:
    """Add `fields` to every later line of the current task (and the tasks it starts)."""
    _context.set(_with(fields))


@contextmanager
def bound(**fields: str) -> Iterator[None]:
    """`fields` on every line logged inside the block."""
    token = _context.set(_with(fields))
    try:
        yield
    finally:
        _context.reset(token)


def current() -> dict[str, str]:
    """The fields the current task's lines carry."""
    return dict(_context.get())


class ContextFilter(logging.Filter):
    """Copies the task's fields onto each record, unless the call gave them as `extra`."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's context fields first, then whatever else it was given as `extra`."""
    fields = {name: getattr(record, name) for name in CONTEXT_FIELDS if hasattr(record, name)}
    for name, value in record.__dict__.items():
        if name not in _STANDARD and name not in fields and not name.startswith("_"):
            fields[name] = value
    return fields


def _access_fields(record: logging.LogRecord) -> dict[str, Any]:
    """uvicorn's access line as fields: `client - "METHOD path HTTP/x" status`."""
    if record.name != "uvicorn.access" or not isinstance(record.args, tuple):
        return {}
    if len(record.args) != 5:
        return {}
    client, method, path, _, status = record.args
    return {"client": client, "method": method, "path": path, "status": status}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_access_fields(record),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`12:03:05.123 INFO  logger  message  job_id=… tenant_id=…`, for a terminal."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s.%(msecs)03d %(levelname)-5s %(name)s  %(message)s", "%H:%M:%S"
        )

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{name}={value}" for name, value in _fields(record).items())
        if not fields:
            return text
        head, newline, rest = text.partition("\n")
        return f"{head}  {fields}{newline}{rest}"


def _utc(created: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{whole}.{int(created % 1 * 1000):03d}Z"


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> logging.Handler:
    """Send every log line to `stream` (stderr) as JSON, or as text in dev mode (or as
    `settings.log_format` says), at `settings.log_level`. Replaces the root logger's
    handlers; returns the one it installs."""
    text = settings.log_format == "text" if settings.log_format else settings.dev
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level if root.level > logging.DEBUG else logging.NOTSET)
    return handler
