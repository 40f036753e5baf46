"""History: bars, forecasts, quotes, alerts, deliveries, the overview, and CSV exports."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterator, Mapping

from flask import Response, jsonify, request, stream_with_context

from web import overview
from web.api import bp
from web.auth import uid
from web.db import get_db
from web.errors import ValidationFailed
from web.filters import Range, parse_range
from web.limits import api_limits
from web.store import history
from web.store.watchlists import normalise_symbol, user_symbols


@bp.get("/symbols/<symbol>/bars")
def symbol_bars(symbol: str) -> Response:
    symbol = normalise_symbol(symbol)
    rng = parse_range(request.args, default_days=7, default_limit=500, max_limit=20_000)
    return jsonify([history.bar_json(b) for b in history.bars(get_db(), symbol, rng)])


@bp.get("/symbols/<symbol>/predictions")
def symbol_predictions(symbol: str) -> Response:
    symbol = normalise_symbol(symbol)
    rng = parse_range(request.args, default_days=7, default_limit=500, max_limit=20_000)
    return jsonify([history.prediction_json(p) for p in history.predictions(get_db(), symbol, rng)])


@bp.get("/quotes")
def quotes() -> Response:
    raw = request.args.get("symbols")
    symbols = [normalise_symbol(s) for s in raw.split(",") if s.strip()] if raw else user_symbols(get_db(), uid())
    if len(symbols) > 200:
        raise ValidationFailed({"symbols": "at most 200 symbols"})
    return jsonify(list(history.quotes(get_db(), symbols).values()))


def _rule_id(raw: str | None) -> int | None:
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 2**31 - 1:
        raise ValidationFailed({"rule_id": f"must be a rule id (1 to {2**31 - 1})"})
    return int(raw)


@bp.get("/alerts")
def list_alerts() -> Response:
    rng = parse_range(request.args, default_days=30, default_limit=200)
    state = request.args.get("state") or None
    if state not in (None, "firing", "resolved"):
        raise ValidationFailed({"state": "firing or resolved"})
    rule_id = _rule_id(request.args.get("rule_id"))
    session = get_db()
    names = history.rule_names(session, uid())
    return jsonify([history.alert_json(a, names) for a in history.alerts(session, uid(), rng, rule_id, state)])


@bp.get("/alerts/<path:alert_id>")
def get_alert(alert_id: str) -> Response:
    session = get_db()
    alert = history.get_alert(session, uid(), alert_id)
    out = history.alert_json(alert, history.rule_names(session, uid()))
    out["deliveries"] = [history.delivery_json(d, c) for d, c in history.deliveries(session, uid(), alert_id=alert.id)]
    return jsonify(out)


@bp.get("/deliveries")
def list_deliveries() -> Response:
    rng = parse_range(request.args, default_days=30, default_limit=200)
    return jsonify([history.delivery_json(d, c) for d, c in history.deliveries(get_db(), uid(), rng)])


def _overview_symbols(symbols: tuple[str, ...]) -> list[str]:
    mine = user_symbols(get_db(), uid())
    return [s for s in symbols if s in mine] if symbols else mine


def overview_data(args: Mapping[str, str]) -> dict[str, Any]:
    """The overview's aggregates over at most the ``overview_rows`` cap of bars (all of them are held
    in memory at once); ``truncated`` says the range held more."""
    cap = api_limits().overview_rows
    try:
        rng = parse_range(args, default_days=30, default_limit=cap, max_limit=cap)
    except ValidationFailed as exc:
        if "limit" not in exc.fields:
            raise
        raise ValidationFailed({"limit": f"an overview aggregates 1 to {cap} bars (overview_rows); "
                                         "for more, ask for shorter ranges or fewer symbols"}) from None
    symbols = _overview_symbols(rng.symbols)
    # one row more than the limit says whether the range held more
    rows = history.overview_rows(get_db(), replace(rng, limit=rng.limit + 1), symbols) if symbols else []
    truncated = len(rows) > rng.limit
    rows = rows[:rng.limit]
    return {
        "symbols": symbols, "from_ms": rng.from_ms, "to_ms": rng.to_ms, "truncated": truncated,
        "daily": overview.daily_summary(rows), "volume_by_symbol": overview.volume_by_symbol(rows),
        "volatility_by_symbol": overview.volatility_by_symbol(rows),
        "volatility_vs_sma_distance": overview.volatility_vs_sma_distance(rows),
    }


@bp.get("/overview")
def overview_json() -> Response:
    return jsonify(overview_data(request.args))


def _csv(name: str, header: list[str], rows: Iterator[list[Any]]) -> Response:
    resp = Response(stream_with_context(history.csv_rows(header, rows)), mimetype="text/csv")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return resp


def _export_range(args: Mapping[str, str]) -> Range:
    """The range of an export; ``limit`` (rows of the whole file) at most the ``export_rows`` cap."""
    cap = api_limits().export_rows
    try:
        return parse_range(args, default_days=30, default_limit=min(100_000, cap), max_limit=cap)
    except ValidationFailed as exc:
        if "limit" not in exc.fields:
            raise
        raise ValidationFailed({"limit": f"an export holds 1 to {cap} rows (export_rows); "
                                         "for more, export shorter ranges with from/to"}) from None


@bp.get("/export/bars.csv")
def export_bars() -> Response:
    rng = _export_range(request.args)
    symbols = _overview_symbols(rng.symbols)
    session = get_db()

    def rows() -> Iterator[list[Any]]:
        left = rng.limit  # of the whole file, not per symbol
        for symbol in symbols:
            for b in history.bars(session, symbol, replace(rng, limit=left)):
                yield [b.symbol, b.bar_seconds] + [getattr(b, c) for c in history.BAR_COLUMNS]
                left -= 1
            if left <= 0:
                return

    return _csv("bars", ["symbol", "bar_seconds", *history.BAR_COLUMNS], rows())


@bp.get("/export/alerts.csv")
def export_alerts() -> Response:
    rng = _export_range(request.args)
    session = get_db()
    names = history.rule_names(session, uid())
    cols = ["id", "ts_ms", "symbol", "rule_id", "rule_name", "state", "series", "op", "value", "threshold", "message"]
    rows = ([history.alert_json(a, names)[c] for c in cols] for a in history.alerts(session, uid(), rng))
    return _csv("alerts", cols, rows)


@bp.get("/export/deliveries.csv")
def export_deliveries() -> Response:
    rng = _export_range(request.args)
    cols = ["id", "alert_id", "channel_id", "channel_name", "channel_kind", "status", "attempts",
            "last_status_code", "last_error", "created_at", "delivered_at"]
    rows = ([history.delivery_json(d, c, with_attempts=False)[k] for k in cols]
            for d, c in history.deliveries(get_db(), uid(), rng))
    return _csv("deliveries", cols, rows)
