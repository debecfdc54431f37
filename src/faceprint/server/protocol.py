"""uvicorn's h11 protocol with a deadline on request headers (`FACEPRINT_SERVER_HEADER_TIMEOUT`).

uvicorn times out idle keep-alive connections, but any byte resets that timer, and nothing limits how long
a request's headers may take: a client sending one header byte a second holds its connection forever.
Here each request's headers must be complete within the deadline after the connection opens or the
previous response ends; otherwise the connection is closed. Body deadlines are the app's
(`Server.authenticated`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from faceprint.server.settings import header_timeout_from_env


class DeadlineH11Protocol(H11Protocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self.header_timeout = header_timeout_from_env()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        cycle = self.cycle  # the request being answered (None before the first)
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue, cycle)

    def _headers_overdue(self, cycle: object) -> None:
        """Close the connection if no new request's headers arrived since the timer was armed."""
        self._header_timer = None
        if self.cycle is cycle and not self.transport.is_closing():
            self.transport.close()
