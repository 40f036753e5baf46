"""Rule preview: when would this rule have fired over the stored history?

Runs the engine's own :class:`~alerts.engine_state.Evaluator` over the
``bars`` and ``predictions`` projections (a price condition reads each
bar's close, since ticks are not stored), sending nothing. Enabled, snooze
and expiry are ignored: the question is about the condition and its
frequency settings, not about today's switches.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from events import contract, models
from alerts.conditions import DERIVED, with_derived
from events.contract import Bar, Prediction, bar_id

__all__ = ["preview_rule", "MAX_RESULTS"]

MAX_RESULTS = 1000
DAY_MS = 86_400_000
_REFERENCES = frozenset(reference for reference, _ in DERIVED.values())


def _bar(rec: models.BarRecord) -> Bar:
    fields = {name: getattr(rec, name) for name in contract.BAR_FLOAT_FIELDS}
    return Bar(id=bar_id(rec.symbol, rec.bar_seconds, rec.start_ms), ts=rec.start_ms + rec.bar_seconds * 1000,
               symbol=rec.symbol, start_ms=rec.start_ms, bar_seconds=rec.bar_seconds, count=rec.count, **fields)


def _prediction(rec: models.PredictionRecord) -> Prediction:
    base = rec.base_close
    return Prediction(id=rec.id, ts=rec.ts_ms, symbol=rec.symbol, base_start_ms=rec.base_start_ms,
                      bar_seconds=rec.bar_seconds, horizon_bars=rec.horizon_bars, base_close=base,
                      predicted_close=rec.predicted_close,
                      predicted_return=math.log(rec.predicted_close / base), lower=rec.lower, upper=rec.upper,
                      interval_level=rec.interval_level, model_version=rec.model_version, skill=rec.skill)


def _seed_derived(evaluator: Any, bar: Bar) -> None:
    """The day and open change at this bar's close, against its own references, before the close is
    observed as the price (the first bar of a session brings a new previous close)."""
    values = evaluator._symbol(bar.symbol).values
    at_close = {**values, "price": bar.close, **{name: getattr(bar, name) for name in _REFERENCES}}
    values.update(with_derived(at_close))
    values["price"] = bar.close


def preview_rule(session: Session, rule: contract.Rule, days: int = 30, *, now_ms: int | None = None,
                 bar_seconds: int | None = None, limit: int = MAX_RESULTS) -> list[dict[str, Any]]:
    """The alerts ``rule`` would have raised in the last ``days`` days, oldest first.

    Each item: ``ts_ms``, ``symbol``, ``state`` (firing/resolved), ``value``,
    ``threshold``, ``message``, ``id``, ``series``, ``op`` (of the condition it fired on), ``evidence``. At most ``limit`` items. Raises
    :class:`alerts.conditions.ConditionError` for a condition that makes no sense.
    Reads only; may take a moment for long histories (one query per table).
    """
    from alerts.engine_state import Evaluator

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    since_ms = now_ms - days * DAY_MS
    symbols = list(rule.symbols)
    if bar_seconds is None:
        bar_seconds = session.scalar(
            select(func.min(models.BarRecord.bar_seconds)).where(models.BarRecord.symbol.in_(symbols))
        ) or 60
    evaluator = Evaluator(bar_seconds=bar_seconds)
    evaluator.upsert_rule(msgspec.structs.replace(rule, enabled=True, snoozed_until_ms=None, expires_ms=None))
    bars = session.scalars(
        select(models.BarRecord)
        .where(models.BarRecord.symbol.in_(symbols), models.BarRecord.bar_seconds == bar_seconds,
               models.BarRecord.start_ms >= since_ms - bar_seconds * 1000, models.BarRecord.start_ms < now_ms)
        .order_by(models.BarRecord.start_ms)
    ).all()
    inputs: list[tuple[int, int, object]] = [(_bar(b).ts, 0, b) for b in bars]
    if "prediction" in evaluator.rules[rule.rule_id].kinds:
        preds = session.scalars(
            select(models.PredictionRecord)
            .where(models.PredictionRecord.symbol.in_(symbols), models.PredictionRecord.ts_ms >= since_ms,
                   models.PredictionRecord.ts_ms < now_ms)
            .order_by(models.PredictionRecord.ts_ms)
        ).all()
        inputs += [(p.ts_ms, 1, p) for p in preds]
    inputs.sort(key=lambda item: (item[0], item[1]))
    out: list[dict[str, Any]] = []
    for _, kind, rec in inputs:
        if kind == 0:
            bar = _bar(rec)  # type: ignore[arg-type]
            _seed_derived(evaluator, bar)
            alerts = evaluator.on_price(bar.symbol, bar.close, bar.ts, bar.id) + evaluator.on_bar(bar)
        else:
            alerts = evaluator.on_prediction(_prediction(rec))  # type: ignore[arg-type]
        for a in alerts:
            if a.ts < since_ms:
                continue
            out.append({"ts_ms": a.ts, "symbol": a.symbol, "state": a.state, "value": a.value,
                        "threshold": a.threshold, "message": a.message, "id": a.id,
                        # the condition it fired on and the prices then: where the chart marks it
                        "series": a.series, "op": a.op, "evidence": a.evidence})
            if len(out) >= limit:
                return out
    return out
