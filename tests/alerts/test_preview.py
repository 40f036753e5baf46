"""Rule preview over the stored bars and predictions, and the rule CLI (real databases)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerts.__main__ import main
from alerts.preview import preview_rule
from events import contract, models
from events.db import make_engine
from tests.alerts.helpers import rule

NOW = 1_795_000_020_000 // 60_000 * 60_000
MIN = 60_000
DAY = 86_400_000


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    return sessionmaker(make_engine(database_url), expire_on_commit=False)


def add_bars(s: Session, closes: list[float], end_ms: int = NOW, symbol: str = "AAPL", **ind: list[float]) -> None:
    for i, c in enumerate(closes):
        start = end_ms - (len(closes) - i) * MIN
        extra = {k: v[i] for k, v in ind.items()}
        s.add(models.BarRecord(symbol=symbol, bar_seconds=60, start_ms=start, open=c, high=c, low=c, close=c,
                               volume=10, count=1, vwap=c, **extra))
    s.commit()


def test_price_rule_preview_lists_firings_and_resolutions(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        add_bars(s, [149, 151, 152, 149, 153, 148])
        out = preview_rule(s, rule({"series": "price", "op": "crossing_up", "value": 150}), days=1, now_ms=NOW)
    assert [(f["state"], f["value"], f["threshold"]) for f in out] == [
        ("firing", 151, 150), ("resolved", 149, 150), ("firing", 153, 150), ("resolved", 148, 150)]
    assert out[0]["ts_ms"] == NOW - 4 * MIN and out[0]["symbol"] == "AAPL"


def test_preview_respects_the_window_frequency_and_ignores_snooze(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        add_bars(s, [151, 149], end_ms=NOW - 3 * DAY)            # too old for a 2-day preview
        add_bars(s, [149, 151, 149, 151, 149, 151])
        snoozed = rule({"series": "close", "op": "greater_than", "value": 150}, frequency="once",
                       snoozed_until_ms=NOW + DAY, enabled=False)
        out = preview_rule(s, snoozed, days=2, now_ms=NOW)
    assert [f["state"] for f in out] == ["firing", "resolved"]


def test_metric_and_forecast_rule_previews(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        add_bars(s, [100, 101, 102], rsi_14=[40.0, 25.0, 35.0])
        for i, (pred, lo) in enumerate([(101.5, 99.0), (102.5, 101.0)]):
            s.add(models.PredictionRecord(id=f"p{i}", symbol="AAPL", ts_ms=NOW - (2 - i) * MIN + 1, base_start_ms=NOW - (3 - i) * MIN,
                                          bar_seconds=60, horizon_bars=1, base_close=100.0, predicted_close=pred,
                                          lower=lo, upper=pred + 2, interval_level=0.8, model_version="m1"))
        s.commit()
        rsi = preview_rule(s, rule({"series": "rsi_14", "op": "less_than", "value": 30}), days=1, now_ms=NOW)
        fc = preview_rule(s, rule({"series": "forecast.move_pct", "op": "greater_than", "value": 1,
                                   "also": {"series": "forecast.lower_move_pct", "op": "greater_than", "value": 0}}),
                          days=1, now_ms=NOW)
    assert [(f["state"], f["value"]) for f in rsi] == [("firing", 25.0), ("resolved", 35.0)]
    assert [f["state"] for f in fc] == ["firing"] and fc[0]["value"] == pytest.approx(2.5)


def test_rule_cli_create_list_preview_delete(database_url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    sessions = sessionmaker(make_engine(database_url))
    with sessions() as s:
        s.add(models.User(id=1, email="u@x.y", password_hash="x"))
        s.flush()
        s.add(models.Channel(id=4, user_id=1, kind="email", name="e", target="u@x.y"))
        s.commit()
        add_bars(s, [149, 151], end_ms=(__import__("time").time_ns() // 1_000_000) // MIN * MIN)
    assert main(["rules", "create", "--user-id", "1", "--symbol", "aapl", "--op", "crossing_up", "--value", "150",
                 "--channel", "4", "--name", "Apple 150"]) == 0
    assert "rule 1 v1 created: AAPL: price crossing up 150" in capsys.readouterr().out
    assert main(["rules", "create", "--user-id", "1", "--symbol", "AAPL",
                 "--condition", json.dumps({"series": "sma_5", "op": "crossing", "other": "sma_20"}),
                 "--active-hours", "09:30-16:00"]) == 0
    capsys.readouterr()
    assert main(["rules", "list"]) == 0
    listed = capsys.readouterr().out
    assert "price crossing up 150" in listed and "SMA 5 crossing SMA 20" in listed
    assert main(["preview", "1", "--days", "1"]) == 0
    assert "1 firings in the last 1 days" in capsys.readouterr().out
    # nonsense is refused with a message naming the problem, and nothing is written
    assert main(["rules", "create", "--user-id", "1", "--symbol", "AAPL", "--op", "greater_than"]) == 2
    assert "give either a level (value) or another series (other)" in capsys.readouterr().err
    assert main(["rules", "create", "--user-id", "1", "--symbol", "AAPL", "--op", "above", "--value", "1"]) == 2
    assert "unknown operator 'above'" in capsys.readouterr().err
    assert main(["rules", "create", "--user-id", "1", "--symbol", "AAPL", "--op", "greater_than", "--value", "1",
                 "--channel", "99"]) == 2
    assert "no channel 99" in capsys.readouterr().err
    assert main(["rules", "delete", "1"]) == 0
    with sessions() as s:
        every = s.scalars(select(models.OutboxEvent).order_by(models.OutboxEvent.id)).all()
        outbox = [o for o in every if o.topic == "rules"]
        assert [o.key for o in outbox] == [b"1", b"2", b"1"]
        # the CLI's rules make AAPL watched, through the same outbox (events.demand), once
        assert [(o.topic, o.key) for o in every if o.topic != "rules"] == [("watched", b"AAPL")]
        assert outbox[2].value is None  # the tombstone
        first = contract.decode(outbox[0].value, contract.Rule)
        assert first.channel_ids == [4] and first.symbols == ["AAPL"]
        second = contract.decode(outbox[1].value, contract.Rule)
        assert (second.active_from_min, second.active_to_min) == (570, 960)
        assert s.get(models.Rule, 1) is None


def test_preview_of_down_5_percent_today_reads_each_bars_previous_close(sessions) -> None:  # type: ignore[no-untyped-def]
    # a new session starts at the fourth bar: its previous close is 100, the earlier bars' 110
    with sessions() as s:
        add_bars(s, [108.0, 104.0, 103.0, 96.0, 94.0, 99.0], prev_close=[110.0, 110.0, 110.0, 100.0, 100.0, 100.0])
        out = preview_rule(s, rule({"series": "day_change_pct", "op": "less_than", "value": -5.0}), days=1, now_ms=NOW)
    # -1.8, -5.45 (fires), -6.36, -4 (resolves), -6 (fires), -1 (resolves)
    assert [(f["state"], round(f["value"], 2)) for f in out] == [
        ("firing", -5.45), ("resolved", -4.0), ("firing", -6.0), ("resolved", -1.0)]
    assert out[0]["ts_ms"] == NOW - 4 * MIN


def test_preview_of_a_rule_of_two_conditions(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        add_bars(s, [201.0, 202.0, 203.0, 199.0], rsi_14=[40.0, 25.0, 28.0, 25.0])
        both = {"series": "price", "op": "greater_than", "value": 200.0,
                "more": [{"series": "rsi_14", "op": "less_than", "value": 30.0}]}
        out = preview_rule(s, rule(both), days=1, now_ms=NOW)
    assert [(f["state"], f["value"]) for f in out] == [("firing", 202.0), ("resolved", 199.0)]
    assert out[0]["message"] == "AAPL: all of: price above 200 (now 202.00); RSI 14 below 30 (now 25)"
