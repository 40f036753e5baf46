"""ingest.feed: what the page can tell a user about each followed symbol (pure, with a clock)."""

from __future__ import annotations

from ingest.feed import FeedWatch

T0 = 1_795_186_800_000


def states(events) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {e.symbol: e.state for e in events}


def test_waiting_then_streaming_then_silent_then_streaming_again() -> None:
    feed = FeedWatch("yfstream", silent_after_s=60)
    feed.follow(["AMD", "ZZZZ"], [], T0)
    first = feed.drain()
    assert states(first) == {"AMD": "waiting", "ZZZZ": "waiting"}
    assert "Yahoo" in first[0].detail
    feed.ticks([("AMD", T0 + 500)], T0 + 1000)
    assert states(feed.drain()) == {"AMD": "streaming"}
    feed.ticks([("AMD", T0 + 2000)], T0 + 2000)
    assert feed.drain() == []  # nothing changed: nothing to publish
    feed.check(T0 + 30_000)
    assert feed.drain() == []
    feed.check(T0 + 62_001)  # AMD's last tick was 60 s ago; ZZZZ never had one
    silent = feed.drain()
    assert states(silent) == {"AMD": "silent", "ZZZZ": "silent"}
    assert {e.symbol: e.last_tick_ms for e in silent} == {"AMD": T0 + 2000, "ZZZZ": None}
    feed.ticks([("AMD", T0 + 70_000)], T0 + 70_000)
    assert states(feed.drain()) == {"AMD": "streaming"}


def test_a_closed_market_is_not_silence() -> None:
    feed = FeedWatch("yfinance", silent_after_s=60, market_open=lambda ms: ms < T0 + 10_000)
    feed.follow(["AMD"], [], T0)
    feed.drain()
    feed.check(T0 + 600_000)
    assert feed.drain() == []


def test_problems_mark_unavailable_until_they_clear_and_dropping_stops() -> None:
    feed = FeedWatch("yfinance")
    feed.follow(["NOPE", "AMD"], [], T0)
    feed.drain()
    feed.problems({"NOPE": "Yahoo Finance failed 3 polls in a row"}, T0 + 1)
    got = feed.drain()
    assert states(got) == {"NOPE": "unavailable"} and "3 polls" in got[0].detail
    feed.problems({}, T0 + 2)
    assert states(feed.drain()) == {"NOPE": "waiting"}
    feed.follow([], ["NOPE"], T0 + 3)
    assert states(feed.drain()) == {"NOPE": "stopped"}
    feed.ticks([("NOPE", T0 + 4)], T0 + 4)  # a straggler of a dropped symbol changes nothing
    assert feed.drain() == [] and set(feed.symbols) == {"AMD"}
