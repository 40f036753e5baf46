"""Small builders of contract events for the web tests (the engine and stream are other stages)."""

from __future__ import annotations

from events.contract import Alert, Bar, Prediction, Tick, alert_id, bar_id, prediction_id, tick_id


def tick(symbol: str, seq: int, price: float, ts_ms: int) -> Tick:
    return Tick(id=tick_id("test", symbol, seq), ts=ts_ms, symbol=symbol, price=price, size=10.0, source="test", seq=seq)


def bar(symbol: str, start_ms: int, close: float, *, bar_seconds: int = 60, volume: float = 1000.0, **extra: float) -> Bar:
    return Bar(id=bar_id(symbol, bar_seconds, start_ms), ts=start_ms + bar_seconds * 1000, symbol=symbol,
               start_ms=start_ms, bar_seconds=bar_seconds, open=close - 0.5, high=close + 1.0, low=close - 1.0,
               close=close, volume=volume, count=12, vwap=close, **extra)


def prediction(symbol: str, base_start_ms: int, base_close: float, predicted: float, bar_seconds: int = 60) -> Prediction:
    import math

    return Prediction(id=prediction_id(symbol, base_start_ms, 1, "m1"), ts=base_start_ms + bar_seconds * 1000,
                      symbol=symbol, base_start_ms=base_start_ms, bar_seconds=bar_seconds, base_close=base_close,
                      predicted_close=predicted, predicted_return=math.log(predicted / base_close),
                      lower=predicted * 0.99, upper=predicted * 1.01, model_version="m1")


def alert(rule_id: int, user_id: int, symbol: str, ts_ms: int, value: float, threshold: float,
          state: str = "firing", trigger: str = "t1", rule_name: str | None = None) -> Alert:
    return Alert(id=alert_id(rule_id, 1, trigger, state), ts=ts_ms, rule_id=rule_id, rule_version=1, user_id=user_id,
                 state=state, symbol=symbol, trigger_event_id=trigger, series="price", op="greater_than",
                 value=value, threshold=threshold, message=f"{symbol} above {threshold}", rule_name=rule_name or f"Rule {rule_id}")
