"""Live ticks from Yahoo's streamer, through yfinance's own WebSocket client.

Two halves, as everywhere in ingest: the pure :class:`ingest.yahoo_decode.StreamDecoder`
(one decoded ``PricingData`` message to a tick), and here the I/O: :class:`YahooStreamSource`,
a thread with its own event loop that keeps one ``yfinance.AsyncWebSocket`` connected,
subscribes and unsubscribes as ``follow`` changes the wanted set, and hands ticks to
``next_batch``.

Why the source owns the reconnect loop instead of calling ``AsyncWebSocket.listen()``: after a
dropped connection ``listen()`` reconnects without re-sending the subscription, waits a fixed
3 s, and only reconnects when the old socket raised: after a clean close from the server its
``async for`` ends and its ``while True`` re-enters the closed socket without ever yielding, which
blocks the event loop (seen with yfinance 1.7 and websockets 17). Its heartbeat task stops on the
first send error. So each connection here is a fresh client: ``subscribe`` (yfinance's, which connects and
sends the whole set and starts its 15 s heartbeat), a read loop over its socket decoded with
yfinance's ``_decode_message``, and ``close``; the next connection re-subscribes everything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterable, Protocol

from events.markethours import is_market_open
from ingest.base import RawTick
from ingest.yahoo_decode import StreamDecoder

log = logging.getLogger(__name__)

#: yfinance's default streamer URL (``yf.AsyncWebSocket``'s ``url`` argument)
YAHOO_STREAM_URL = "wss://streamer.finance.yahoo.com/?version=2"


@dataclass
class StreamStats:
    messages: int = 0  # every frame received
    ticks: int = 0
    dropped: int = 0  # frames that were not ticks (bad frame, no price, symbol not wanted, ...)
    duplicates: int = 0
    heartbeats: int = 0
    connects: int = 0  # connections opened and subscribed
    reconnects: int = 0  # connections lost or failed, each followed by a new attempt
    silences: int = 0  # reconnects forced by the silence watchdog
    drop_reasons: Counter[str] = field(default_factory=Counter)


class StreamClient(Protocol):
    """One connection to the streamer, as the source uses it (:class:`YFinanceClient`; tests may
    pass their own through ``client_factory``)."""

    async def subscribe(self, symbols: list[str]) -> None:
        """Send the subscription (the first call connects)."""

    async def unsubscribe(self, symbols: list[str]) -> None: ...

    async def close(self) -> None: ...

    def frames(self) -> AsyncIterator[Any]:
        """The socket's frames; ends on a clean close, raises when the connection drops."""
        ...

    def decode(self, payload: str) -> dict[str, Any]:
        """One frame's ``message`` (base64 ``PricingData``) as ``MessageToDict`` output."""
        ...

    def heartbeat_failed(self) -> BaseException | None: ...


class YFinanceClient:
    """A yfinance ``AsyncWebSocket`` for one connection, with a read loop over its socket."""

    def __init__(self, url: str) -> None:
        import yfinance as yf

        self.ws = yf.AsyncWebSocket(url=url, verbose=False)

    async def subscribe(self, symbols: list[str]) -> None:
        await self.ws.subscribe(symbols)

    async def unsubscribe(self, symbols: list[str]) -> None:
        await self.ws.unsubscribe(symbols)

    async def close(self) -> None:
        await self.ws.close()

    async def frames(self) -> AsyncIterator[Any]:
        async for frame in self.ws._ws:  # ends on a clean close; raises ConnectionClosedError otherwise
            yield frame

    def decode(self, payload: str) -> dict[str, Any]:
        return dict(self.ws._decode_message(payload))

    def heartbeat_failed(self) -> BaseException | None:
        task = self.ws._heartbeat_task  # retrieve its error so asyncio does not log it at exit
        if task is not None and task.done() and not task.cancelled():
            error = task.exception()
            return error if isinstance(error, BaseException) else None
        return None


class _ConnectionEnded(Exception):
    pass


class YahooStreamSource:
    """Tick-level prices from Yahoo's streamer for the symbols ``follow`` asks for.

    ``next_batch`` returns what arrived since the last call (waiting at most ``wait_s`` for the
    first tick); it never returns None, a live feed does not end. ``close`` stops the thread.
    """

    name = "yfstream"
    #: the decoder de-duplicates on (symbol, time, day volume, price); the sequencer's check on the
    #: RawTick alone would drop two equal trades in one millisecond
    dedupe = False

    def __init__(self, symbols: Iterable[str] = (), *, url: str = YAHOO_STREAM_URL, silence_s: float = 60.0,
                 closed_silence_s: float | None = None, backoff_s: float = 1.0, max_backoff_s: float = 60.0,
                 connect_timeout_s: float = 15.0, wait_s: float = 0.1, max_buffered: int = 200_000,
                 market_open: Callable[[int], bool] = is_market_open,
                 clock_ms: Callable[[], int] | None = None,
                 client_factory: Callable[[str], StreamClient] = YFinanceClient) -> None:
        self.url = url
        self.silence_s = silence_s
        self.closed_silence_s = closed_silence_s  # the watchdog outside regular hours (None: off; quiet is normal)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.wait_s = wait_s
        self.max_buffered = max_buffered  # ticks held for next_batch; past it the oldest go (a stalled ingest loop)
        self.market_open = market_open
        self.clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self.client_factory = client_factory
        self.stats = StreamStats()
        self.decoder = StreamDecoder()
        self.symbols = sorted({s.strip().upper() for s in symbols if s.strip()})  # the set before any follow()
        self._wanted: frozenset[str] = frozenset(self.symbols)
        self._last_tick_ms: dict[str, int] = {}
        self._out: deque[RawTick] = deque()
        self._ready = threading.Condition()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Lock()
        self._last_message = 0.0  # monotonic time of the last frame (or of the connect), for the watchdog

    # -- the ingest loop's side -------------------------------------------------------------

    def start(self) -> YahooStreamSource:
        with self._started:
            if self._thread is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._run_loop, name="yfstream", daemon=True)
                self._thread.start()
        return self

    def follow(self, symbols: frozenset[str]) -> None:
        wanted = frozenset(s.strip().upper() for s in symbols if s.strip())
        if wanted != self._wanted:
            log.debug("yfstream: following %d symbols (+%s -%s)", len(wanted), sorted(wanted - self._wanted),
                     sorted(self._wanted - wanted))
        self._wanted = wanted
        self.start()
        self._wake()

    @property
    def wanted(self) -> frozenset[str]:
        return self._wanted

    def next_batch(self, max_ticks: int) -> list[RawTick]:
        self.start()
        with self._ready:
            if not self._out:
                self._ready.wait(self.wait_s)
            out: list[RawTick] = []
            wanted = self._wanted
            while self._out and len(out) < max_ticks:
                raw = self._out.popleft()
                if raw.symbol in wanted:  # unfollowed while it waited here
                    out.append(raw)
            return out

    def last_tick_ms(self) -> dict[str, int]:
        """Wall-clock ms of each symbol's latest tick (for "no ticks from Yahoo for X")."""
        return dict(self._last_tick_ms)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop streaming: the connection is closed and the thread ends (within ``timeout_s``)."""
        self._stopping = True
        self._wake()
        thread, loop, task = self._thread, self._loop, self._task
        if thread is None:
            return
        thread.join(min(1.0, timeout_s))
        if thread.is_alive() and loop is not None and task is not None:  # stuck in a connect: cut it short
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop closed meanwhile
                pass
            thread.join(max(0.0, timeout_s - 1.0))

    def __enter__(self) -> YahooStreamSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wake(self) -> None:
        loop, kick = self._loop, self._kick
        if loop is not None and kick is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(kick.set)
            except RuntimeError:  # the loop closed between the check and the call
                pass

    # -- the streaming thread -----------------------------------------------------------------

    def _run_loop(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._task = self._loop.create_task(self._main())
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:  # close() cut a connect short
            pass
        except Exception:
            log.exception("yfstream: streaming thread failed")
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._kick = asyncio.Event()
        failures = 0
        while not self._stopping:
            if not self._wanted:
                await self._wait_kick(None)
                continue
            got_messages = await self._connection()
            if self._stopping:
                break
            failures = 0 if got_messages else failures + 1
            self.stats.reconnects += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** min(failures, 30))
            log.info("yfstream: reconnecting in %.1f s (attempt %d)", delay, failures + 1)
            await self._sleep(delay)

    async def _wait_kick(self, timeout_s: float | None) -> None:
        assert self._kick is not None
        try:
            await asyncio.wait_for(self._kick.wait(), timeout_s)
        except asyncio.TimeoutError:
            pass
        self._kick.clear()

    async def _sleep(self, delay_s: float) -> None:
        """Wait out a back-off; only a stop cuts it short (a demand change does not hurry a reconnect)."""
        deadline = time.monotonic() + delay_s
        while not self._stopping and time.monotonic() < deadline:
            await self._wait_kick(deadline - time.monotonic())

    def _silence_limit_s(self) -> float | None:
        return self.silence_s if self.market_open(self.clock_ms()) else self.closed_silence_s

    async def _connection(self) -> bool:
        """One connection, from subscribe to its end; whether it delivered any message."""
        assert self._kick is not None
        client = self.client_factory(self.url)
        subscribed: set[str] = set()
        received_before = self.stats.messages
        reader: asyncio.Task[None] | None = None
        try:
            wanted = self._wanted
            # yfinance's subscribe connects and sends the whole set: after every (re)connect
            await asyncio.wait_for(client.subscribe(sorted(wanted)), self.connect_timeout_s)
            subscribed = set(wanted)
            self.stats.connects += 1
            log.info("yfstream: connected to %s, subscribed %d symbols", self.url, len(subscribed))
            self._last_message = time.monotonic()
            reader = asyncio.create_task(self._read(client))
            while not self._stopping:
                self._kick.clear()
                wanted = self._wanted
                gone, new = subscribed - wanted, wanted - subscribed
                if gone:
                    await client.unsubscribe(sorted(gone))
                    subscribed -= gone
                    for symbol in gone:
                        self.decoder.forget(symbol)
                if new:
                    await client.subscribe(sorted(new))
                    subscribed |= new
                kick = asyncio.create_task(self._kick.wait())
                await asyncio.wait({reader, kick}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                kick.cancel()
                if reader.done():
                    raise _ConnectionEnded(reader.exception() or "closed by the server")
                limit = self._silence_limit_s()
                if subscribed and limit is not None and time.monotonic() - self._last_message >= limit:
                    self.stats.silences += 1
                    log.warning("yfstream: no message for %.1f s while subscribed to %d symbols; reconnecting",
                                limit, len(subscribed))
                    break
        except Exception as exc:  # refused, timed out, dropped, a send that failed: all mean reconnect
            if not self._stopping:
                log.warning("yfstream: connection to %s ended (%s: %s)", self.url, type(exc).__name__, exc)
        finally:
            if reader is not None:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
            try:
                await asyncio.wait_for(client.close(), 5.0)
            except Exception:  # the socket is gone either way
                pass
            if client.heartbeat_failed() is not None:
                log.debug("yfstream: heartbeat stopped with the connection")
        return self.stats.messages != received_before

    async def _read(self, client: StreamClient) -> None:
        async for frame in client.frames():
            self._last_message = time.monotonic()
            self.stats.messages += 1
            self._handle(client, frame)

    def _handle(self, client: StreamClient, frame: Any) -> None:
        msg = self._decode_frame(client, frame)
        if msg is None:
            self._count_drops()
            return
        tick = self.decoder.decode(msg, self._wanted)
        self.stats.duplicates = self.decoder.duplicates
        self.stats.heartbeats = self.decoder.heartbeats
        if tick is None:
            self._count_drops()
            return
        self.stats.ticks += 1
        self._last_tick_ms[tick.symbol] = self.clock_ms()
        with self._ready:
            if len(self._out) >= self.max_buffered:
                self._out.popleft()
                self.decoder.drop("buffer full")
                self._count_drops()
            self._out.append(tick)
            self._ready.notify()

    def _decode_frame(self, client: StreamClient, frame: Any) -> dict[str, Any] | None:
        if not isinstance(frame, str):
            self.decoder.drop("binary frame")
            return None
        try:
            outer = json.loads(frame)
        except ValueError:
            self.decoder.drop("not json")
            return None
        payload = outer.get("message") if isinstance(outer, dict) else None
        if not isinstance(payload, str) or not payload:
            self.decoder.drop("no message")
            return None
        try:
            return client.decode(payload)
        except Exception:  # yfinance raises here when its hide_exceptions is off
            self.decoder.drop("undecodable")
            return None

    def _count_drops(self) -> None:
        self.stats.drop_reasons = self.decoder.dropped
        self.stats.dropped = sum(self.decoder.dropped.values())
