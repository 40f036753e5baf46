"""The Yahoo streaming source against a local server that speaks Yahoo's streamer protocol.

Every message is built with yfinance's own ``PricingData`` and consumed by yfinance's own
``AsyncWebSocket``; the server runs on 127.0.0.1. A stream ends with a marker tick: once the
marker is out, everything sent before it has been through the source, so "no more ticks" is
an exact assertion, not a wait.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from events.contract import Tick, Watched, decode, watched_id
from events.kafka import EventProducer, ShutdownFlag
from events.settings import Settings
from ingest.base import RawTick
from ingest.runner import run_ingest
from ingest.yahoo_decode import StreamDecoder, round_price, session_of
from ingest.yahoo_stream import YahooStreamSource
from tests.ingest.yahoo_server import FakeYahooServer, pricing, pricing_frame
from tests.support import read_topic, wait_for


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() * 1000)


REGULAR = ms("2026-12-01T15:00:00")  # a Tuesday, 10:00 New York
PRE = ms("2026-12-01T13:00:00")  # 08:00 New York
EVENING = ms("2026-12-02T02:00:00")  # 21:00 New York, Tuesday


def source(url: str, **kw: object) -> YahooStreamSource:
    opts: dict[str, object] = {"url": url, "backoff_s": 0.05, "max_backoff_s": 0.2, "silence_s": 30.0,
                               "market_open": lambda _ms: True}
    opts.update(kw)
    return YahooStreamSource(**opts)  # type: ignore[arg-type]


def collect_until(src: YahooStreamSource, marker_price: float, timeout_s: float = 10.0) -> list[RawTick]:
    """Ticks from ``src`` up to and including the first one at ``marker_price``."""
    out: list[RawTick] = []
    deadline = time.monotonic() + timeout_s
    while not any(t.price == marker_price for t in out):
        assert time.monotonic() < deadline, f"no marker tick at {marker_price}; got {out}"
        out.extend(src.next_batch(100))
    return out


def as_sets(frame: dict[str, list[str]]) -> dict[str, set[str]]:
    return {k: set(v) for k, v in frame.items()}  # yfinance sends its subscription set in set order


# -- the pure decoder -----------------------------------------------------------------------

def test_round_price_follows_the_hint_or_the_float32() -> None:
    assert round_price(187.32119750976562, 2) == 187.32
    assert round_price(0.12345670, 4) == 0.1235
    assert round_price(187.32000732421875, None) == 187.32  # float32(187.32) widened
    assert round_price(1.100000023841858, None) == 1.1


def test_session_from_market_hours_and_the_calendar() -> None:
    assert session_of(1, REGULAR) == "regular"
    assert session_of(2, EVENING) == "post"
    assert session_of(0, PRE) == "pre"  # PRE_MARKET is proto3's 0: absent on the wire
    assert session_of(0, EVENING) is None  # absent, and not pre-market time: unknown
    assert session_of(0, ms("2026-12-05T13:00:00")) is None  # a Saturday
    assert session_of(3, EVENING) is None  # EXTENDED_HOURS_MARKET
    assert session_of(0, ms("2026-07-03T12:00:00")) is None  # 08:00 New York on a holiday (the 4th observed)
    assert session_of(0, ms("2026-07-02T12:00:00")) == "pre"  # the day before trades
    assert session_of(0, ms("2026-12-01T08:00:00")) is None  # 03:00 New York: before the pre-market
    assert session_of(0, ms("2026-12-01T14:30:00")) is None  # 09:30: the regular session, not "pre"


def test_decoder_sizes_are_volume_deltas_never_negative() -> None:
    d = StreamDecoder()
    wanted = frozenset({"AAPL"})

    def msg(t: int, vol: int | None, price: float = 100.0) -> dict[str, object]:
        m: dict[str, object] = {"id": "AAPL", "price": price, "time": str(t), "market_hours": 1, "price_hint": "2"}
        if vol is not None:
            m["day_volume"] = str(vol)
        return m

    sizes = [(t.size if t else None) for t in (
        d.decode(msg(REGULAR, 1000), wanted),           # first: 0
        d.decode(msg(REGULAR + 1, 1300), wanted),       # +300
        d.decode(msg(REGULAR + 1, 1300), wanted),       # exact re-send: dropped
        d.decode(msg(REGULAR - 5, 1200, 99.0), wanted),  # late: 0, baseline kept
        d.decode(msg(REGULAR + 2, 1350), wanted),       # +50 over 1300
        d.decode(msg(REGULAR + 3, 10), wanted),          # counter reset: 0
        d.decode(msg(REGULAR + 4, 25), wanted),          # +15
        d.decode(msg(REGULAR + 86_400_000, 40), wanted),  # next day: 0
        d.decode(msg(REGULAR + 86_400_001, None), wanted),  # no volume (0) after 40: reset, 0
    )]
    assert sizes == [0.0, 300.0, None, 0.0, 50.0, 0.0, 15.0, 0.0, 0.0]
    assert d.duplicates == 1
    assert d.decode({"id": "AAPL", "time": str(REGULAR)}, wanted) is None
    assert d.decode({"id": "AAPL", "price": float("nan"), "time": "1"}, wanted) is None
    assert d.decode({"id": "AAPL", "price": 1.0}, wanted) is None
    assert d.decode({"id": "AAPL", "price": 1.0, "time": "x"}, wanted) is None
    assert d.decode({"id": "IBM", "price": 1.0, "time": "1"}, wanted) is None
    assert d.decode({"price": 1.0, "time": "1"}, wanted) is None
    assert d.decode({"id": "AAPL", "quote_type": 7, "time": "1"}, wanted) is None
    assert dict(d.dropped) == {"no price": 2, "no time": 1, "bad field": 1, "not wanted": 1, "no symbol": 1}
    assert d.heartbeats == 1


# -- against the local streamer ---------------------------------------------------------------

def test_ticks_then_unsubscribe() -> None:
    with FakeYahooServer() as server, source(server.url) as src:
        src.follow(frozenset({"AAPL", "MSFT"}))
        server.wait_subscribed({"AAPL", "MSFT"})
        assert as_sets(server.frames(1)[0]) == {"subscribe": {"AAPL", "MSFT"}}
        assert server.send("AAPL", 187.3212, REGULAR, market_hours=1, day_volume=1000, price_hint=2)
        assert server.send("AAPL", 187.33, REGULAR + 400, market_hours=1, day_volume=1250, price_hint=2)
        assert server.send("MSFT", 410.1, REGULAR + 500, market_hours=1, day_volume=70, price_hint=2)
        assert server.send("MSFT", 410.125, EVENING, market_hours=2, day_volume=95, price_hint=3)
        assert server.send("AAPL", 186.9, PRE + 86_400_000, day_volume=5)  # next day, pre-market, no hint
        ticks = collect_until(src, 186.9)
        assert ticks == [
            RawTick("AAPL", REGULAR, 187.32, 0.0, "regular"),
            RawTick("AAPL", REGULAR + 400, 187.33, 250.0, "regular"),
            RawTick("MSFT", REGULAR + 500, 410.1, 0.0, "regular"),
            RawTick("MSFT", EVENING, 410.125, 25.0, "post"),
            RawTick("AAPL", PRE + 86_400_000, 186.9, 0.0, "pre"),
        ]
        assert set(src.last_tick_ms()) == {"AAPL", "MSFT"}

        src.follow(frozenset({"AAPL"}))
        wait_for(lambda: {"unsubscribe": ["MSFT"]} in server.frames(1), 10, "the unsubscribe frame")
        assert server.subscribed() == {"AAPL"}
        assert not server.send("MSFT", 411.0, REGULAR + 600)  # the server honours it ...
        server.send("MSFT", 411.5, REGULAR + 700, force=True)  # ... and one sent regardless is dropped
        server.send("AAPL", 187.5, PRE + 86_401_000, day_volume=30, price_hint=2)
        assert collect_until(src, 187.5) == [RawTick("AAPL", PRE + 86_401_000, 187.5, 25.0, "pre")]
        assert src.stats.drop_reasons["not wanted"] == 1
        assert (src.stats.ticks, src.stats.connects, src.stats.reconnects) == (6, 1, 0)


@pytest.mark.parametrize("abort", [False, True], ids=["close-handshake", "torn-tcp"])
def test_dropped_connection_reconnects_and_resubscribes_without_loss_or_double(abort: bool) -> None:
    with FakeYahooServer() as server, source(server.url) as src:
        src.follow(frozenset({"AAPL", "MSFT"}))
        server.wait_subscribed({"AAPL", "MSFT"}, connection=1)
        vols = [100, 160, 230, 300, 420]
        sent = [(REGULAR + i * 1000, 190.0 + i, v) for i, v in enumerate(vols)]
        for t, p, v in sent[:3]:
            server.send("AAPL", p, t, market_hours=1, day_volume=v, price_hint=2)
        before = collect_until(src, 192.0)
        server.drop(abort=abort)

        server.wait_subscribed({"AAPL", "MSFT"}, connection=2)
        assert as_sets(server.frames(2)[0]) == {"subscribe": {"AAPL", "MSFT"}}  # the whole set, from the source
        for t, p, v in sent[2:]:  # the last one before the drop comes again, then the new ones
            server.send("AAPL", p, t, market_hours=1, day_volume=v, price_hint=2)
        after = collect_until(src, 194.0)

        expected = [RawTick("AAPL", t, p, float(v - prev), "regular")
                    for (t, p, v), prev in zip(sent, [vols[0]] + vols[:-1])]
        assert before + after == expected
        assert src.stats.duplicates == 1
        assert (src.stats.connects, src.stats.reconnects) == (2, 1)


def test_connection_refused_backs_off_then_connects() -> None:
    server = FakeYahooServer()  # port chosen, nothing listening yet
    with source(server.url) as src:
        src.follow(frozenset({"AAPL"}))
        wait_for(lambda: src.stats.reconnects >= 2, 10, "failed attempts")
        assert src.stats.connects == 0
        with server:
            server.wait_subscribed({"AAPL"})
            server.send("AAPL", 10.0, REGULAR, market_hours=1)
            assert collect_until(src, 10.0) == [RawTick("AAPL", REGULAR, 10.0, 0.0, "regular")]
        assert src.stats.connects == 1


def test_unanswered_handshake_times_out_retries_and_close_cuts_it_short() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(10)
    port = listener.getsockname()[1]
    held = []
    try:
        src = source(f"ws://127.0.0.1:{port}/", connect_timeout_s=0.3)
        src.follow(frozenset({"AAPL"}))
        held.append(listener.accept()[0])  # the first attempt: TCP up, the upgrade never answered
        src.connect_timeout_s = 60.0  # (read when an attempt starts: the first keeps its 0.3 s)
        held.append(listener.accept()[0])  # it gave up and tried again, now stuck for a minute ...
        assert src.stats.connects == 0 and src.stats.reconnects == 1
        started = time.monotonic()
        src.close()
        assert time.monotonic() - started < 3.0  # ... which close() does not wait out
        assert src._thread is not None and not src._thread.is_alive()
    finally:
        for conn in held:
            conn.close()
        listener.close()


def test_refollowed_symbol_starts_afresh_and_a_resent_quote_stays_a_duplicate() -> None:
    with FakeYahooServer() as server, source(server.url) as src:
        src.follow(frozenset({"AAPL"}))
        server.wait_subscribed({"AAPL"})
        server.send("AAPL", 20.0, REGULAR, market_hours=1, day_volume=100)
        server.send("AAPL", 20.5, REGULAR + 1, market_hours=1, day_volume=130)
        assert [t.size for t in collect_until(src, 20.5)] == [0.0, 30.0]
        src.follow(frozenset())
        wait_for(lambda: {"unsubscribe": ["AAPL"]} in server.frames(1), 10, "the unsubscribe frame")
        src.follow(frozenset({"AAPL"}))
        server.wait_subscribed({"AAPL"})
        server.send("AAPL", 20.5, REGULAR + 1, market_hours=1, day_volume=130)  # the quote again, on subscribe
        server.send("AAPL", 21.0, REGULAR + 9, market_hours=1, day_volume=900)  # traded while not followed
        server.send("AAPL", 21.5, REGULAR + 10, market_hours=1, day_volume=950)
        assert collect_until(src, 21.5) == [RawTick("AAPL", REGULAR + 9, 21.0, 0.0, "regular"),
                                            RawTick("AAPL", REGULAR + 10, 21.5, 50.0, "regular")]
        assert src.stats.duplicates == 1 and src.stats.connects == 1


def test_silence_watchdog_forces_a_reconnect() -> None:
    with FakeYahooServer() as server, source(server.url, silence_s=0.5) as src:
        started = time.monotonic()
        src.follow(frozenset({"AAPL"}))
        server.wait_subscribed({"AAPL"}, connection=1)
        server.wait_subscribed({"AAPL"}, connection=2, timeout_s=5)
        assert time.monotonic() - started >= 0.5
        assert src.stats.silences >= 1 and src.stats.reconnects >= 1
        server.send("AAPL", 11.0, REGULAR, market_hours=1)
        assert collect_until(src, 11.0) == [RawTick("AAPL", REGULAR, 11.0, 0.0, "regular")]


def test_watchdog_rests_when_the_market_is_closed() -> None:
    closed = YahooStreamSource(market_open=lambda _ms: False, silence_s=1.0)
    assert closed._silence_limit_s() is None  # quiet overnight is normal
    assert YahooStreamSource(market_open=lambda _ms: False, closed_silence_s=600.0)._silence_limit_s() == 600.0
    assert YahooStreamSource(market_open=lambda _ms: True, silence_s=1.0)._silence_limit_s() == 1.0


def test_malformed_frames_are_counted_and_skipped() -> None:
    with FakeYahooServer() as server, source(server.url) as src:
        src.follow(frozenset({"AAPL"}))
        server.wait_subscribed({"AAPL"})
        server.send_raw("not json at all")
        server.send_raw(json.dumps({"type": "pricing"}))
        server.send_raw(json.dumps({"type": "pricing", "message": "!!!not base64"}))
        server.send_raw(json.dumps({"type": "pricing", "message": base64.b64encode(b"\xff\xff\xff\xff").decode()}))
        server.send_raw(pricing_frame(pricing("AAPL", 0.0, REGULAR)))  # no price
        server.send_raw(pricing_frame(pricing("AAPL", 12.0, 0)))  # no time
        server.send("AAPL", 12.5, REGULAR, market_hours=1)
        assert collect_until(src, 12.5) == [RawTick("AAPL", REGULAR, 12.5, 0.0, "regular")]
        assert dict(src.stats.drop_reasons) == {"not json": 1, "no message": 1, "undecodable": 2,
                                                "no price": 1, "no time": 1}
        assert (src.stats.messages, src.stats.dropped, src.stats.ticks) == (7, 6, 1)
        assert src.stats.connects == 1  # bad frames do not cost the connection


# -- into the real broker ---------------------------------------------------------------------

def test_run_ingest_publishes_streamed_ticks_with_session(kafka_settings: Settings) -> None:
    with FakeYahooServer() as server, source(server.url) as src:
        src.follow(frozenset({"AAPL", "MSFT"}))
        server.wait_subscribed({"AAPL", "MSFT"})
        for i in range(10):
            server.send("AAPL", 190.0 + i / 10, REGULAR + i, market_hours=1, day_volume=100 + 10 * i, price_hint=2)
            server.send("MSFT", 400.0 + i / 10, EVENING + i, market_hours=2, day_volume=5 * i, price_hint=2)
        wait_for(lambda: src.stats.ticks == 20, 10, "20 ticks in the source")
        report = run_ingest(src, EventProducer(kafka_settings), ShutdownFlag(), rate=0, max_ticks=20, duration_s=30)
        assert report.produced == 20
    ticks = [decode(m.value(), Tick) for m in read_topic(kafka_settings, kafka_settings.topic("ticks"), expect=20)]
    by_symbol: dict[str, list[Tick]] = {}
    for t in ticks:
        by_symbol.setdefault(t.symbol, []).append(t)
    assert {t.source for t in ticks} == {"yfstream"}
    assert [t.seq for t in by_symbol["AAPL"]] == list(range(1, 11))
    assert {t.session for t in by_symbol["AAPL"]} == {"regular"}
    assert {t.session for t in by_symbol["MSFT"]} == {"post"}
    assert [t.size for t in by_symbol["AAPL"]] == [0.0] + [10.0] * 9


def test_cli_streams_from_the_url_given(kafka_settings: Settings) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "KAFKA_TOPIC_PREFIX": kafka_settings.kafka_topic_prefix,
           "INGEST_HISTORY_BARS": "0", "METRICS_PORT": "0"}
    with FakeYahooServer() as server:
        proc = subprocess.Popen([sys.executable, "-m", "ingest", "--source", "yfstream", "--stream-url", server.url,
                                 "--symbols", "aapl,msft", "--rate", "0", "--count", "4"],
                                env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server.wait_subscribed({"AAPL", "MSFT"}, timeout_s=60)
            for i, symbol in enumerate(["AAPL", "MSFT", "AAPL", "MSFT"]):
                server.send(symbol, 100.0 + i, PRE + i, day_volume=10 * i)
            _, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert "ingest: 4 ticks" in err
    ticks = [decode(m.value(), Tick) for m in read_topic(kafka_settings, kafka_settings.topic("ticks"), expect=4)]
    assert sorted((t.symbol, t.price, t.session) for t in ticks) == [
        ("AAPL", 100.0, "pre"), ("AAPL", 102.0, "pre"), ("MSFT", 101.0, "pre"), ("MSFT", 103.0, "pre")]


def test_subscriptions_follow_the_watched_topic_through_run_ingest(kafka_settings: Settings) -> None:
    from ingest.demand import DemandFollower

    producer = EventProducer(kafka_settings)
    watched = kafka_settings.topic("watched")
    with FakeYahooServer() as server, source(server.url) as src:
        shutdown = ShutdownFlag()
        runner = threading.Thread(target=run_ingest, args=(src, EventProducer(kafka_settings), shutdown),
                                  kwargs={"rate": 0, "demand": DemandFollower(kafka_settings, ["AAPL"])},
                                  daemon=True)
        runner.start()
        try:
            server.wait_subscribed({"AAPL"}, timeout_s=30)
            producer.produce(Watched(id=watched_id("NVDA", REGULAR), ts=REGULAR, symbol="NVDA", watchers=1), watched)
            producer.flush()
            server.wait_subscribed({"AAPL", "NVDA"}, connection=1, timeout_s=30)
            server.send("NVDA", 150.0, REGULAR + 1, market_hours=1, day_volume=10)
            server.send("AAPL", 190.0, REGULAR + 2, market_hours=1, day_volume=20)
            producer.produce_bytes(watched, b"NVDA", None)  # nobody watches it any more
            producer.flush()
            wait_for(lambda: {"unsubscribe": ["NVDA"]} in server.frames(1), 30, "the unsubscribe of NVDA")
            server.send("NVDA", 151.0, REGULAR + 3, market_hours=1, day_volume=30, force=True)
            server.send("AAPL", 191.0, REGULAR + 4, market_hours=1, day_volume=25)
            wait_for(lambda: src.stats.ticks == 3 and src.stats.drop_reasons["not wanted"] == 1, 10, "the last frames")
        finally:
            shutdown.set()
            runner.join(30)
    ticks = [decode(m.value(), Tick) for m in read_topic(kafka_settings, kafka_settings.topic("ticks"), expect=3)]
    assert sorted((t.symbol, t.price, t.size) for t in ticks) == [
        ("AAPL", 190.0, 0.0), ("AAPL", 191.0, 5.0), ("NVDA", 150.0, 0.0)]
