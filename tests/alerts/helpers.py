"""Builders of plain contract values for the alerts tests."""

from __future__ import annotations

from typing import Any

import msgspec

from events import contract

T0 = 1_794_999_960_000  # on a minute (bar) boundary
BAR_MS = 60_000


def rule(condition: dict[str, Any], *, rule_id: int = 1, version: int = 1, symbols: list[str] | None = None,
         frequency: str = "every_time", **fields: Any) -> contract.Rule:
    return msgspec.convert({"type": "rule", "id": f"rule:{rule_id}:{version}", "ts": T0, "rule_id": rule_id,
                            "version": version, "user_id": 7, "symbols": symbols or ["AAPL"],
                            "condition": condition, "frequency": frequency, **fields}, contract.Rule)


def tick(price: float, i: int, symbol: str = "AAPL", ts_ms: int | None = None) -> contract.Tick:
    return contract.Tick(id=f"sim:{symbol}:{i}", ts=ts_ms if ts_ms is not None else T0 + i * 1000, symbol=symbol,
                         price=float(price), size=1.0, source="sim", seq=i)


def bar(close: float, i: int, symbol: str = "AAPL", **indicators: float | None) -> contract.Bar:
    start = T0 + i * BAR_MS
    return contract.Bar(id=contract.bar_id(symbol, 60, start), ts=start + BAR_MS, symbol=symbol, start_ms=start,
                        bar_seconds=60, open=close, high=close, low=close, close=close, volume=100.0, count=1,
                        vwap=close, **indicators)


def prediction(base: float, predicted: float, lower: float, upper: float, i: int, symbol: str = "AAPL") -> contract.Prediction:
    start = T0 + i * BAR_MS
    return contract.Prediction(id=contract.prediction_id(symbol, start, 1, "m1"), ts=start + BAR_MS, symbol=symbol,
                               base_start_ms=start, bar_seconds=60, base_close=base, predicted_close=predicted,
                               predicted_return=0.0, lower=lower, upper=upper, model_version="m1")


def states(alerts: list[contract.Alert]) -> list[tuple[str, float | None]]:
    return [(a.state, a.value) for a in alerts]
