"""A local stand-in for Yahoo's streamer, speaking its protocol on 127.0.0.1.

Clients send JSON text frames ``{"subscribe": [...]}`` / ``{"unsubscribe": [...]}``; the
server sends ``{"type": "pricing", "message": base64(PricingData.SerializeToString())}``,
built with yfinance's own ``pricing_pb2.PricingData``, and only for symbols the current
connection subscribed (unless told to send regardless). It runs in its own thread with its
own event loop; the test drives it from the test thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from tests.support import free_port, wait_for


def pricing(symbol: str, price: float, time_ms: int, **fields: Any) -> bytes:
    """A serialized ``PricingData`` (yfinance's message class) with the given fields."""
    from yfinance.pricing_pb2 import PricingData

    return bytes(PricingData(id=symbol, price=price, time=time_ms, **fields).SerializeToString())


def pricing_frame(payload: bytes) -> str:
    return json.dumps({"type": "pricing", "message": base64.b64encode(payload).decode("ascii")})


class FakeYahooServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        self.received: list[tuple[int, dict[str, Any]]] = []  # (connection number, frame) in arrival order
        self.connections = 0
        self.sent = 0
        self._subscribed: set[str] = set()
        self._ws: ServerConnection | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._run, name="fake-yahoo", daemon=True)

    def __enter__(self) -> FakeYahooServer:
        self._thread.start()
        assert self._ready.wait(10), "fake Yahoo server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()
        async with serve(self._handler, "127.0.0.1", self.port):
            self._ready.set()
            await self._stop

    async def _handler(self, ws: ServerConnection) -> None:
        with self._lock:
            self.connections += 1
            number = self.connections
            self._ws = ws
            self._subscribed = set()
        try:
            async for text in ws:
                frame = json.loads(text)
                with self._lock:
                    self.received.append((number, frame))
                    if self._ws is ws:
                        self._subscribed |= set(frame.get("subscribe", []))
                        self._subscribed -= set(frame.get("unsubscribe", []))
        except Exception:  # the connection was dropped under the reader: the test made it so
            pass
        finally:
            with self._lock:
                if self._ws is ws:
                    self._ws = None
                    self._subscribed = set()

    # -- driven from the test thread ---------------------------------------------------------

    def subscribed(self) -> set[str]:
        with self._lock:
            return set(self._subscribed)

    def frames(self, connection: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [f for n, f in self.received if connection is None or n == connection]

    def wait_subscribed(self, symbols: set[str], connection: int | None = None, timeout_s: float = 10.0) -> None:
        """Until connection number ``connection`` (default: any current one) subscribed ``symbols``."""
        def ok() -> bool:
            with self._lock:
                return (connection is None or self.connections == connection) and symbols <= self._subscribed
        wait_for(ok, timeout_s, f"subscription to {sorted(symbols)} on connection {connection}")

    def send(self, symbol: str, price: float, time_ms: int, *, force: bool = False, **fields: Any) -> bool:
        """Send one pricing message if the current connection subscribed ``symbol`` (or ``force``)."""
        if not force and symbol not in self.subscribed():
            return False
        self.send_raw(pricing_frame(pricing(symbol, price, time_ms, **fields)))
        return True

    def send_raw(self, text: str) -> None:
        ws = self._ws
        assert ws is not None, "no client connected"
        asyncio.run_coroutine_threadsafe(ws.send(text), self._loop).result(5)
        self.sent += 1

    def drop(self, *, abort: bool = False) -> None:
        """End the current connection from the server side: a close handshake, or a torn TCP connection."""
        ws = self._ws
        assert ws is not None, "no client connected"

        async def end() -> None:
            if abort:
                ws.transport.abort()
            else:
                await ws.close()

        asyncio.run_coroutine_threadsafe(end(), self._loop).result(5)
