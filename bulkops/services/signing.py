"""Signed, expiring links: HMAC-SHA256 over a path, a tenant and an expiry time.

Whoever holds a link may use it until it expires, without a token (as with presigned
object-store URLs); only the API, which holds the key, can make one."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from bulkops.config import Settings

log = logging.getLogger(__name__)

KEY_FILE = "signing-key"


def signing_key(settings: Settings) -> bytes:
    """BULKOPS_SIGNING_KEY, or else a key generated once and kept in the data folder."""
    if settings.signing_key is not None:
        return settings.signing_key.get_secret_value().encode()
    path = settings.data_dir.resolve() / KEY_FILE
    if not settings.dev:
        _warn_unset(path)
    return _kept_key(path)


@functools.cache
def _warn_unset(path: Path) -> None:
    log.warning(
        "BULKOPS_SIGNING_KEY is not set: download links are signed with the key kept in %s, "
        "which API processes on other machines do not share",
        path,
    )


@functools.cache
def _kept_key(path: Path) -> bytes:
    try:
        return path.read_text().strip().encode()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    try:
        # Created exclusively: of two processes starting at once, one key wins.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    return key.encode()


def signature(key: bytes, *, path: str, tenant_id: str, expires: int) -> str:
    message = f"{path}\n{tenant_id}\n{expires}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def valid_signature(key: bytes, given: str, *, path: str, tenant_id: str, expires: int) -> bool:
    """Whether `given` is the link's signature, compared in constant time."""
    expected = signature(key, path=path, tenant_id=tenant_id, expires=expires)
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))
