"""uvicorn's h11 protocol with a read deadline: a client must send a whole request (headers and body)
within `read_timeout` seconds of starting it, or the connection is closed.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not a request that stalls
mid-headers or mid-body, so a slow client could hold a connection open for ever. A stall mid-body
reaches the app as a disconnect, like any client that leaves.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class TimedH11Protocol(H11Protocol):
    read_timeout: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.DONE:  # the whole request is in
            self._disarm()
        elif self._deadline is None:
            self._arm()  # the next request on a kept-alive connection has begun

    def on_response_complete(self) -> None:
        super().on_response_complete()  # idle from here on: the keep-alive timeout applies
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.read_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state is not h11.DONE and not self.transport.is_closing():
            self.logger.info("closed a connection that sent no whole request in %g s", self.read_timeout)
            self.transport.close()


def timed_h11(read_timeout: float) -> type[TimedH11Protocol]:
    """The protocol class for `uvicorn.run(http=...)` with this deadline."""
    return type("TimedH11Protocol", (TimedH11Protocol,), {"read_timeout": read_timeout})
