"""What a running `bulkops dev` leaves in its data folder for the other commands: the
URLs of its servers and API, and the demo tenant's token."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

URLS_FILE = "urls.json"
DEMO_TOKEN_FILE = "demo-token"


@dataclass(frozen=True)
class DevUrls:
    database_url: str | None = None
    redis_url: str | None = None
    api_url: str | None = None
    storage_url: str | None = None
    storage_options: dict[str, str] | None = None


def save_urls(data_dir: Path, urls: DevUrls) -> None:
    (data_dir / URLS_FILE).write_text(
        json.dumps(
            {
                "database_url": urls.database_url,
                "redis_url": urls.redis_url,
                "api_url": urls.api_url,
                "storage_url": urls.storage_url,
                "storage_options": urls.storage_options,
            }
        )
    )


def remove_urls(data_dir: Path) -> None:
    (data_dir / URLS_FILE).unlink(missing_ok=True)


def running_dev(data_dir: Path) -> DevUrls:
    """The URLs of the `bulkops dev` running on this data folder (all None when none is)."""
    saved: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        saved = json.loads((data_dir / URLS_FILE).read_text())
    if not isinstance(saved, dict):
        return DevUrls()
    return DevUrls(
        database_url=saved.get("database_url"),
        redis_url=saved.get("redis_url"),
        api_url=saved.get("api_url"),
        storage_url=saved.get("storage_url"),
        storage_options=saved.get("storage_options"),
    )


def demo_token_path(data_dir: Path) -> Path:
    return data_dir / DEMO_TOKEN_FILE


def read_demo_token(data_dir: Path) -> str | None:
    """The demo tenant's token `bulkops dev` keeps, or None."""
    with contextlib.suppress(OSError):
        return demo_token_path(data_dir).read_text().strip() or None
    return None
