"""Read side: bars, forecasts, quotes, alert history, deliveries (projections and the delivery log)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session

from events import models
from web.store.errors import NotFound
from web.filters import DAY_MS, Range
from web.overview import BarRow

BAR_COLUMNS = ("start_ms", "open", "high", "low", "close", "volume", "vwap", "count", "change_pct", "sma_5",
               "sma_10", "sma_20", "ema_12", "ema_26", "macd", "volatility_20", "zscore_20", "rsi_14", "volume_ratio")


def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).isoformat()


def bar_json(b: models.BarRecord) -> dict[str, Any]:
    return {"symbol": b.symbol, "bar_seconds": b.bar_seconds, **{c: getattr(b, c) for c in BAR_COLUMNS},
            "history": bool(b.history)}


def bars(session: Session, symbol: str, rng: Range, bar_seconds: int | None = None) -> list[models.BarRecord]:
    """The latest ``rng.limit`` bars of ``symbol`` inside the range, oldest first."""
    q = select(models.BarRecord).where(
        models.BarRecord.symbol == symbol, models.BarRecord.start_ms >= rng.from_ms, models.BarRecord.start_ms < rng.to_ms
    )
    if bar_seconds:
        q = q.where(models.BarRecord.bar_seconds == bar_seconds)
    rows = list(session.scalars(q.order_by(models.BarRecord.start_ms.desc()).limit(rng.limit)))
    rows.reverse()
    return rows


def prediction_json(p: models.PredictionRecord) -> dict[str, Any]:
    return {
        "id": p.id, "symbol": p.symbol, "ts_ms": p.ts_ms, "base_start_ms": p.base_start_ms,
        "target_ms": p.base_start_ms + (p.horizon_bars + 1) * p.bar_seconds * 1000,
        "bar_seconds": p.bar_seconds, "horizon_bars": p.horizon_bars, "base_close": p.base_close,
        "predicted_close": p.predicted_close, "lower": p.lower, "upper": p.upper,
        "interval_level": p.interval_level, "model_version": p.model_version, "skill": p.skill,
        **{f: getattr(p, f) for f in models.PREDICTION_RECORD_FIELDS},
    }


def predictions(session: Session, symbol: str, rng: Range) -> list[models.PredictionRecord]:
    q = (select(models.PredictionRecord)
         .where(models.PredictionRecord.symbol == symbol, models.PredictionRecord.base_start_ms >= rng.from_ms,
                models.PredictionRecord.base_start_ms < rng.to_ms)
         .order_by(models.PredictionRecord.base_start_ms.desc()).limit(rng.limit))
    rows = list(session.scalars(q))
    rows.reverse()
    return rows


def quotes(session: Session, symbols: list[str]) -> dict[str, dict[str, Any]]:
    """Per symbol: last close, the reference price for % change (previous UTC day's last close,
    else today's first open) and the change."""
    out: dict[str, dict[str, Any]] = {}
    for symbol in symbols:
        last = session.scalar(select(models.BarRecord).where(models.BarRecord.symbol == symbol)
                              .order_by(models.BarRecord.start_ms.desc()).limit(1))
        if last is None:
            out[symbol] = {"symbol": symbol, "price": None, "ref_price": None, "change_pct": None, "ts_ms": None}
            continue
        day_start = last.start_ms - last.start_ms % DAY_MS
        prev = session.scalar(select(models.BarRecord.close).where(
            models.BarRecord.symbol == symbol, models.BarRecord.start_ms < day_start)
            .order_by(models.BarRecord.start_ms.desc()).limit(1))
        if prev is None:
            prev = session.scalar(select(models.BarRecord.open).where(
                models.BarRecord.symbol == symbol, models.BarRecord.start_ms >= day_start)
                .order_by(models.BarRecord.start_ms).limit(1))
        out[symbol] = {"symbol": symbol, "price": last.close, "ref_price": prev,
                       "change_pct": (last.close / prev - 1) * 100 if prev else None,
                       "ts_ms": last.start_ms + last.bar_seconds * 1000}
    from web.store.feed import feed_statuses

    feeds = feed_statuses(session, symbols)
    for symbol, quote in out.items():
        quote["feed"] = feeds.get(symbol)  # the data feed's own word: waiting, streaming, silent, unavailable
    return out


def overview_rows(session: Session, rng: Range, symbols: list[str]) -> list[BarRow]:
    q = (select(models.BarRecord.symbol, models.BarRecord.start_ms, models.BarRecord.open, models.BarRecord.high,
                models.BarRecord.low, models.BarRecord.close, models.BarRecord.volume, models.BarRecord.sma_20)
         .where(models.BarRecord.symbol.in_(symbols), models.BarRecord.start_ms >= rng.from_ms,
                models.BarRecord.start_ms < rng.to_ms)
         .order_by(models.BarRecord.symbol, models.BarRecord.start_ms).limit(rng.limit))
    return [BarRow(*r) for r in session.execute(q)]


# --- alerts ----------------------------------------------------------------------------


def alert_json(a: models.AlertRecord, rule_names: dict[int, str] | None = None) -> dict[str, Any]:
    return {
        "id": a.id, "rule_id": a.rule_id, "rule_version": a.rule_version,
        "rule_name": (rule_names or {}).get(a.rule_id, ""), "symbol": a.symbol, "state": a.state,
        "ts_ms": a.ts_ms, "series": a.series, "op": a.op, "value": a.value, "threshold": a.threshold,
        "message": a.message, "trigger_event_id": a.trigger_event_id,
        # the price and close when it fired: the chart's marker sits there (web/static/app.js markerPrice)
        "evidence": a.evidence or {},
    }


def rule_names(session: Session, user_id: int) -> dict[int, str]:
    return {rid: name or f"Rule #{rid}" for rid, name in
            session.execute(select(models.Rule.id, models.Rule.name).where(models.Rule.user_id == user_id))}


def alerts(session: Session, user_id: int, rng: Range, rule_id: int | None = None,
           state: str | None = None) -> list[models.AlertRecord]:
    q = select(models.AlertRecord).where(_visible_to(user_id),
                                         models.AlertRecord.ts_ms >= rng.from_ms, models.AlertRecord.ts_ms < rng.to_ms)
    if rng.symbols:
        q = q.where(models.AlertRecord.symbol.in_(rng.symbols))
    if rule_id is not None:
        q = q.where(models.AlertRecord.rule_id == rule_id)
    if state:
        q = q.where(models.AlertRecord.state == state)
    return list(session.scalars(q.order_by(models.AlertRecord.ts_ms.desc()).limit(rng.limit)))


def _watched_symbols(user_id: int) -> Any:
    """The symbols the user watches: in any of their watchlists or named by one of their rules
    (those whose system alerts the dispatcher sends them, ``alerts.dispatch.watcher_channels``)."""
    listed = select(models.WatchlistSymbol.symbol).join(models.Watchlist).where(models.Watchlist.user_id == user_id)
    ruled = select(models.Rule.symbol).where(models.Rule.user_id == user_id, models.Rule.symbol.is_not(None))
    return listed.union(ruled).scalar_subquery()


def _visible_to(user_id: int) -> Any:
    """A user's alerts: those of their own rules, and the system alerts (user 0: the stale feed)
    on a symbol they watch, which reach them through their channels too."""
    return or_(models.AlertRecord.user_id == user_id,
               and_(models.AlertRecord.user_id == 0, models.AlertRecord.symbol.in_(_watched_symbols(user_id))))


def get_alert(session: Session, user_id: int, alert_id: str) -> models.AlertRecord:
    a = session.get(models.AlertRecord, alert_id)
    if a is None or user_id == 0:
        raise NotFound("alert")
    if a.user_id != user_id and not (a.user_id == 0 and session.scalar(
            select(func.count()).where(literal(a.symbol).in_(_watched_symbols(user_id))))):
        raise NotFound("alert")
    return a


# --- deliveries --------------------------------------------------------------------------


def delivery_json(d: models.Delivery, channel: models.Channel | None, with_attempts: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id, "alert_id": d.alert_id, "channel_id": d.channel_id,
        "channel_name": channel.name if channel else None, "channel_kind": channel.kind if channel else None,
        "status": d.status, "attempts": d.attempts, "last_status_code": d.last_status_code,
        "last_error": d.last_error, "created_at": _iso(d.created_at), "delivered_at": _iso(d.delivered_at),
        "next_attempt_at": _iso(d.next_attempt_at),
    }
    if with_attempts:
        out["attempt_log"] = [
            {"number": a.number, "at": _iso(a.at), "status_code": a.status_code, "error": a.error,
             "duration_ms": a.duration_ms} for a in d.attempt_log
        ]
    return out


def deliveries(session: Session, user_id: int, rng: Range | None = None, alert_id: str | None = None,
               channel_id: int | None = None) -> list[tuple[models.Delivery, models.Channel | None]]:
    q = (select(models.Delivery, models.Channel).join(models.Channel, models.Channel.id == models.Delivery.channel_id, isouter=True)
         .where(models.Delivery.user_id == user_id))
    if alert_id is not None:
        q = q.where(models.Delivery.alert_id == alert_id)
    if channel_id is not None:
        q = q.where(models.Delivery.channel_id == channel_id)
    if rng is not None and rng.symbols:
        alert_ids = select(models.AlertRecord.id).where(_visible_to(user_id),
                                                        models.AlertRecord.symbol.in_(rng.symbols))
        q = q.where(models.Delivery.alert_id.in_(alert_ids))
    if rng is not None:
        q = q.where(models.Delivery.created_at >= datetime.fromtimestamp(rng.from_ms / 1000, tz=timezone.utc),
                    models.Delivery.created_at < datetime.fromtimestamp(rng.to_ms / 1000, tz=timezone.utc))
    q = q.order_by(models.Delivery.id.desc()).limit(rng.limit if rng else 1000)
    return [(d, c) for d, c in session.execute(q).all()]


# --- CSV ---------------------------------------------------------------------------------


def csv_rows(header: list[str], rows: Iterator[list[Any]]) -> Iterator[str]:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
        if buf.tell() > 32_768:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
