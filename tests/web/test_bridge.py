"""The bridge's coalescing and routing (pure: the clock and the emitter are plain values)."""

from __future__ import annotations

from typing import Any

from tests.web.events_factory import alert, bar, prediction, tick
from web.bridge import Coalescer, emissions, route

T0 = 1_790_000_000_000


def test_at_most_ten_updates_per_second_per_symbol_whatever_the_tick_rate() -> None:
    c = Coalescer(interval_s=0.1)
    sent = []
    for i in range(5000):  # 5000 ticks per second on one symbol, 1000 on another
        now = i / 5000
        c.add(tick("AAPL", i, 100 + i / 1000, T0 + i))
        if i % 5 == 0:
            c.add(tick("MSFT", i, 50 + i / 1000, T0 + i))
        sent += c.due(now)
    sent += c.drain()
    per_symbol = {s: [u for u in sent if u["symbol"] == s] for s in ("AAPL", "MSFT")}
    assert 10 <= len(per_symbol["AAPL"]) <= 11 and 10 <= len(per_symbol["MSFT"]) <= 11
    assert per_symbol["AAPL"][-1]["price"] == 100 + 4999 / 1000  # the latest price is never lost
    assert all(u["price"] > v["price"] for u, v in zip(per_symbol["AAPL"][1:], per_symbol["AAPL"]))


def test_bars_are_not_dropped_and_the_newest_forecast_wins() -> None:
    c = Coalescer(interval_s=0.1)
    assert c.due(0.0) == []
    c.add(bar("AAPL", T0, 100.0))
    first = c.due(0.0)
    for i in range(1, 4):
        c.add(bar("AAPL", T0 + i * 60_000, 100.0 + i))
    c.add(prediction("AAPL", T0 + 60_000, 101.0, 102.0))
    c.add(prediction("AAPL", T0, 100.0, 99.0))  # older: ignored
    assert c.due(0.05) == []  # too soon after the last update
    due_in = c.next_due_in_s(0.05)
    assert due_in is not None and abs(due_in - 0.05) < 1e-9
    second = c.due(0.1)
    assert [b["close"] for b in first[0]["bars"]] == [100.0]
    assert [b["close"] for b in second[0]["bars"]] == [101.0, 102.0, 103.0]
    assert second[0]["prediction"]["predicted_close"] == 102.0 and second[0]["price"] is None


def test_alerts_go_at_once_and_only_to_their_owner() -> None:
    c = Coalescer()
    emitted: list[tuple[str, dict[str, Any], str]] = []
    route([alert(3, 42, "AAPL", T0, 101.0, 100.0), tick("AAPL", 1, 101.0, T0), alert(0, 0, "MSFT", T0, 1.0, 1.0)],
          c, lambda ev, payload, room: emitted.append((ev, payload, room)))
    assert [(e, r) for e, _p, r in emitted] == [("alert", "user:42"), ("system_alert", "symbol:MSFT")]
    assert emitted[0][1]["rule_name"] == "Rule 3" and emitted[0][1]["ts_ms"] == T0
    assert c.due(0.0)[0]["price"] == 101.0  # the tick waits for the coalescer


def test_a_symbol_nobody_views_gets_no_update_but_keeps_coalescing() -> None:
    c = Coalescer(interval_s=0.1)
    viewed = {"AAPL"}
    out = emissions([tick("AAPL", 1, 100.0, T0), tick("MSFT", 1, 50.0, T0), bar("MSFT", T0, 50.5)], c, 0.0, viewed)
    assert [(e, r) for e, _p, r in out] == [("update", "symbol:AAPL")]
    for i in range(2, 50):  # MSFT keeps ticking unseen: its state is replaced, never sent
        assert emissions([tick("MSFT", i, 50.0 + i, T0 + i)], c, i / 10, viewed) == []
    assert c.next_due_in_s(5.0, viewed) is None  # nothing viewed is pending: the bridge is not holding output
    assert c.drain(set()) == []


def test_a_symbol_that_becomes_viewed_gets_its_pending_state_at_once() -> None:
    c = Coalescer(interval_s=0.1)
    c.add(tick("MSFT", 1, 50.0, T0))
    c.add(bar("MSFT", T0, 50.5))
    c.add(prediction("MSFT", T0, 50.5, 51.0))
    c.add(tick("MSFT", 2, 51.5, T0 + 5))
    assert c.due(1.0, set()) == []
    assert c.next_due_in_s(1.0, {"MSFT"}) == 0.0
    (update,) = c.due(1.0, {"MSFT", "NVDA"})  # the first read of the viewed set that has it
    assert update["price"] == 51.5 and [b["close"] for b in update["bars"]] == [50.5]
    assert update["prediction"]["predicted_close"] == 51.0
    c.add(tick("MSFT", 3, 52.0, T0 + 10))
    assert c.due(1.05, {"MSFT"}) == []  # viewed now, so coalesced like any other
    assert [u["price"] for u in c.due(1.1, {"MSFT"})] == [52.0]


def test_alerts_and_system_alerts_are_never_filtered() -> None:
    c = Coalescer()
    out = emissions([alert(3, 42, "AAPL", T0, 101.0, 100.0), alert(0, 0, "MSFT", T0, 1.0, 1.0), tick("AAPL", 1, 1.0, T0)],
                    c, 0.0, set())
    assert [(e, r) for e, _p, r in out] == [("alert", "user:42"), ("system_alert", "symbol:MSFT")]


def test_without_a_viewed_set_every_symbol_is_updated() -> None:
    c = Coalescer()
    out = emissions([tick(s, 1, 1.0, T0) for s in ("AAPL", "MSFT", "NVDA")], c, 0.0, None)
    assert sorted(r for _e, _p, r in out) == ["symbol:AAPL", "symbol:MSFT", "symbol:NVDA"]
