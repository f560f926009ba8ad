"""The webhook sender of a worker: it keeps up to `webhook_concurrency` deliveries in
flight, claiming more (due ones of every tenant) as soon as there is room, as soon as a
transaction that wrote deliveries commits (the outbox notifies; see `listen_for_deliveries`)
and at least every `webhook_poll_seconds` (retries that come due), so a slow receiver holds
one place, not the others. Every worker runs one; `FOR UPDATE SKIP LOCKED` gives each
delivery to one of them."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from bulkops.db.webhooks import ClaimedDelivery, listen_for_deliveries
from bulkops.services.container import Services
from bulkops.services.webhook_delivery import claim, deliver

log = logging.getLogger(__name__)


class WebhookSender:
    """Sends due deliveries in the background from `start()` to `stop()`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.task: asyncio.Task[None] | None = None
        self.in_flight: set[asyncio.Task[None]] = set()
        self._db_turn = asyncio.Lock()
        self._room = asyncio.Event()
        # Set when deliveries were written; without a listening connection the poll alone
        # finds them.
        self._nudged = asyncio.Event()
        self._listener: asyncpg.Connection | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="bulkops-webhooks")

    async def _run(self) -> None:
        settings = self.services.settings
        while True:
            await self._listen()
            self._nudged.clear()
            free = settings.webhook_concurrency - len(self.in_flight)
            claimed: list[ClaimedDelivery] = []
            if free > 0:
                try:
                    async with self._db_turn:
                        claimed = await claim(self.services, free)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                    # The worker restarts on a lost database; until then, try again.
                    log.warning("webhook deliveries not claimed: %s", exc)
                except Exception:
                    log.exception("webhook sender failed to claim deliveries; going on")
            for delivery in claimed:
                task = asyncio.create_task(self._send(delivery))
                self.in_flight.add(task)
                task.add_done_callback(self._done)
            if claimed and len(claimed) == free:
                # More may be due: claim again as soon as a place frees up.
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), settings.webhook_poll_seconds)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._nudged.wait(), settings.webhook_poll_seconds)

    async def _listen(self) -> None:
        """Open the connection that hears of new deliveries, when it is not open."""
        if self._listener is not None and not self._listener.is_closed():
            return
        settings = self.services.settings
        try:
            self._listener = await listen_for_deliveries(
                settings.database_url or "", settings.app_role, self._nudged.set
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            self._listener = None
            log.warning("not listening for new webhook deliveries (polling only): %s", exc)

    async def _send(self, delivery: ClaimedDelivery) -> None:
        try:
            await deliver(self.services, delivery, self._db_turn)
        except Exception:
            # Its lease lapses and another attempt follows.
            log.exception("webhook delivery %s not recorded", delivery.id)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self._room.set()

    async def stop(self) -> None:
        """Stop sending. A delivery cut off mid-attempt is sent again once its lease lapses."""
        tasks = [t for t in (self.task, *self.in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
