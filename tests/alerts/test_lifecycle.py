"""The alert lifecycle in the engine's core: the all-clear (``notify_on_resolve``), reminders
(``repeat_interval_s``, in event time) and the stale-feed alert on the one market calendar."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerts.engine_state import Evaluator, decode_state, encode_state
from events.contract import Alert
from events.contract_ids import alert_id
from tests.alerts.helpers import T0, rule, tick

ABOVE_150 = {"series": "price", "op": "greater_than", "value": 150}
NY = ZoneInfo("America/New_York")


def evaluator(**fields: Any) -> Evaluator:
    ev = Evaluator(bar_seconds=60)
    ev.upsert_rule(rule(ABOVE_150, channel_ids=[4, 5], **fields))
    return ev


def ticks(ev: Evaluator, prices: list[float], start: int = 0, step_ms: int = 10_000) -> list[Alert]:
    out: list[Alert] = []
    for i, p in enumerate(prices, start):
        out += ev.on_tick(tick(p, i, ts_ms=T0 + i * step_ms))
    return out


def notices(alerts: list[Alert]) -> list[tuple[str, int, str, list[int]]]:
    return [(a.state, a.repeat, a.trigger_event_id, a.channel_ids) for a in alerts]


def test_a_resolve_reaches_the_channels_only_with_notify_on_resolve() -> None:
    prices = [151.0, 152.0, 149.0]
    quiet = ticks(evaluator(), prices)
    assert notices(quiet) == [("firing", 0, "sim:AAPL:0", [4, 5]), ("resolved", 0, "sim:AAPL:2", [])]
    told = ticks(evaluator(notify_on_resolve=True), prices)
    assert notices(told) == [("firing", 0, "sim:AAPL:0", [4, 5]), ("resolved", 0, "sim:AAPL:2", [4, 5])]
    # the same occurrence has the same id whichever way it is told (one delivery row per channel)
    assert [a.id for a in told] == [a.id for a in quiet] == [
        alert_id(1, 1, "sim:AAPL:0", "firing"), alert_id(1, 1, "sim:AAPL:2", "resolved")]


def test_reminders_every_interval_of_event_time_while_firing() -> None:
    ev = evaluator(repeat_interval_s=60, notify_on_resolve=True)
    # a tick every 10 s: fires at 0 s, reminds at 60 s and 120 s, resolves at 150 s; fires again at 170 s
    prices = [151.0] * 15 + [149.0, 149.0] + [151.0] * 7
    out = ticks(ev, prices)
    assert notices(out) == [
        ("firing", 0, "sim:AAPL:0", [4, 5]), ("firing", 1, "sim:AAPL:6", [4, 5]),
        ("firing", 2, "sim:AAPL:12", [4, 5]), ("resolved", 0, "sim:AAPL:15", [4, 5]),
        ("firing", 0, "sim:AAPL:17", [4, 5]), ("firing", 1, "sim:AAPL:23", [4, 5])]
    assert len({a.id for a in out}) == len(out)
    assert out[1].id == alert_id(1, 1, "sim:AAPL:6", "repeat1") and out[1].ts == T0 + 60_000
    assert out[1].value == 151.0 and out[1].threshold == 150.0


def test_no_reminder_without_an_interval_and_the_first_notice_keeps_its_cooldown() -> None:
    assert notices(ticks(evaluator(), [151.0] * 30)) == [("firing", 0, "sim:AAPL:0", [4, 5])]
    # cooldown 300 s gates the first notice of the next firing, not the reminders of this one
    ev = evaluator(repeat_interval_s=60, cooldown_s=300)
    out = ticks(ev, [151.0] * 13 + [149.0] + [151.0] * 20)
    assert [(a.state, a.repeat, a.ts - T0) for a in out] == [
        ("firing", 0, 0), ("firing", 1, 60_000), ("firing", 2, 120_000), ("resolved", 0, 130_000),
        ("firing", 0, 300_000)]


def test_a_snoozed_rule_does_not_remind() -> None:
    ev = evaluator(repeat_interval_s=60)
    out = ticks(ev, [151.0] * 3)
    ev.upsert_rule(rule(ABOVE_150, channel_ids=[4, 5], repeat_interval_s=60, snoozed_until_ms=T0 + 100_000))
    out += ticks(ev, [151.0] * 7, start=3)  # 30..90 s: the reminder due at 60 s waits for the snooze
    out += ticks(ev, [151.0] * 2, start=10)
    assert [(a.repeat, a.ts - T0) for a in out] == [(0, 0), (1, 100_000)]


def test_reminders_are_reproduced_identically_on_replay_and_across_a_restore() -> None:
    prices = [151.0] * 20 + [149.0] + [151.0] * 14
    whole = ticks(evaluator(repeat_interval_s=60, notify_on_resolve=True), prices)
    again = ticks(evaluator(repeat_interval_s=60, notify_on_resolve=True), prices)
    assert whole == again and [a.repeat for a in whole] == [0, 1, 2, 3, 0, 0, 1, 2]
    for cut in (4, 6, 7, 13, 20, 25):  # just before, at and after a reminder; resolved; firing again
        first = evaluator(repeat_interval_s=60, notify_on_resolve=True)
        before = ticks(first, prices[:cut])
        restored = evaluator(repeat_interval_s=60, notify_on_resolve=True)
        for symbol, state in first.take_dirty().items():  # the changelog round trip
            restored.restore(symbol, decode_state(encode_state(state)))
        assert before + ticks(restored, prices[cut:], start=cut) == whole, cut


# --- stale feed -------------------------------------------------------------------------


def ny(y: int, mo: int, d: int, h: int, mi: int) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=NY).timestamp() * 1000)


def stale_evaluator(last_tick_ms: int, after_s: int = 120) -> Evaluator:
    ev = Evaluator(bar_seconds=60, stale_after_s=after_s)
    ev.upsert_rule(rule(ABOVE_150))
    ev.on_tick(tick(100, 0, ts_ms=last_tick_ms))
    return ev


def test_stale_feed_is_silent_on_a_holiday_and_a_weekend() -> None:
    ev = stale_evaluator(ny(2026, 7, 2, 15, 59))  # Thursday's last tick; Friday 3 July 2026 is a holiday
    for h in range(9, 17):
        assert ev.check_stale(ny(2026, 7, 3, h, 45)) == [], h
    assert ev.check_stale(ny(2026, 7, 4, 11, 0)) == [] and ev.check_stale(ny(2026, 7, 5, 11, 0)) == []
    fired = ev.check_stale(ny(2026, 7, 6, 9, 32))  # Monday, 2 min into the session
    assert [(a.rule_id, a.state, a.value) for a in fired] == [(0, "firing", 120.0)]


def test_stale_feed_does_not_fire_at_the_open_the_overnight_gap_does_not_count() -> None:
    ev = stale_evaluator(ny(2026, 11, 17, 15, 59))  # Tuesday's last tick
    assert ev.check_stale(ny(2026, 11, 18, 9, 30)) == []
    assert ev.check_stale(ny(2026, 11, 18, 9, 31)) == []
    assert ev.on_tick(tick(100, 1, ts_ms=ny(2026, 11, 18, 9, 31))) == []  # ticks come: nothing to resolve
    assert ev.check_stale(ny(2026, 11, 18, 9, 33) - 1) == []  # not yet 2 min after the last tick
    fired = ev.check_stale(ny(2026, 11, 18, 9, 33))
    assert [(a.state, a.trigger_event_id) for a in fired] == [("firing", "stale:AAPL:sim:AAPL:1")]


def test_stale_feed_is_silent_on_a_half_day_afternoon_and_resolves_when_ticks_return() -> None:
    ev = stale_evaluator(ny(2026, 11, 27, 12, 58))  # the day after Thanksgiving closes at 13:00
    assert ev.check_stale(ny(2026, 11, 27, 13, 30)) == []
    assert ev.check_stale(ny(2026, 11, 27, 15, 0)) == []
    fired = ev.check_stale(ny(2026, 11, 30, 9, 32))
    assert [a.state for a in fired] == ["firing"]
    assert ev.check_stale(ny(2026, 11, 30, 10, 0)) == []  # once per outage
    back = ev.on_tick(tick(100, 1, ts_ms=ny(2026, 11, 30, 10, 1)))
    assert [(a.rule_id, a.state, a.id) for a in back] == [
        (0, "resolved", alert_id(0, 0, fired[0].trigger_event_id, "resolved"))]
