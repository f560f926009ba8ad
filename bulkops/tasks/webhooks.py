"""The webhook sender of a worker: every `webhook_poll_seconds` (at once again while
there is more due), the due deliveries of every tenant are claimed and sent. Every worker
runs one; `FOR UPDATE SKIP LOCKED` gives each delivery to one of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from bulkops.services.container import Services
from bulkops.services.webhook_delivery import deliver_due

log = logging.getLogger(__name__)


class WebhookSender:
    """Sends due deliveries in the background from `start()` to `stop()`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="bulkops-webhooks")

    async def _run(self) -> None:
        settings = self.services.settings
        while True:
            try:
                sent = await deliver_due(self.services)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # The worker restarts on a lost database; until then, try again.
                log.warning("webhook deliveries not sent: %s", exc)
                sent = 0
            except Exception:
                log.exception("webhook sender failed; going on")
                sent = 0
            if sent < settings.webhook_concurrency:
                await asyncio.sleep(settings.webhook_poll_seconds)

    async def stop(self) -> None:
        """Stop sending. A delivery cut off mid-attempt is sent again once its lease lapses."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
