"""uvicorn's server for the tests' `server` fixture, stopping as soon as it is told to.

uvicorn looks whether it should exit every 0.1 s and, once it should, sleeps another 0.1 s
before it waits for its connections to close; every API test starts and stops a server,
so the suite would spend minutes in those sleeps. This one waits on an event instead and
polls for the connections to go more often; the shutdown is otherwise uvicorn's own (the
same steps, the same lifespan shutdown)."""

from __future__ import annotations

import asyncio
import socket

import uvicorn

# How often the shutdown looks whether the connections and tasks are gone.
POLL_SECONDS = 0.005


class QuickServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    def stop(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        # One tick sets the default headers (the Date header) as uvicorn's loop does.
        if await self.on_tick(0):
            return
        await self._exit.wait()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        # uvicorn signals no event when its last connection or task is gone: poll.
        while (self.server_state.connections or self.server_state.tasks) and not self.force_exit:  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()
