"""The live scoreboard of a symbol's forecasts (``forecast_scores``, aggregated on read)."""

from __future__ import annotations

from flask import Response, jsonify, request

from predict import scoreboard as sb
from web.api import bp
from web.db import get_db
from web.errors import ValidationFailed
from web.projector import scoreboard
from web.store.watchlists import normalise_symbol

MAX_WINDOW = 5000


def _window(raw: str | None) -> int:
    if raw is None or raw == "":
        return sb.WINDOW
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_WINDOW:
        raise ValidationFailed({"window": f"must be a whole number of scored forecasts, 1 to {MAX_WINDOW}"})
    return int(raw)


@bp.get("/symbols/<symbol>/scoreboard")
def symbol_scoreboard(symbol: str) -> Response:
    """Live scoreboard: per model version, live skill against persistence (HAC DM p, n), coverage, direction."""
    symbol = normalise_symbol(symbol)
    window = _window(request.args.get("window"))
    return jsonify({"symbol": symbol, "window": window, "min_n": sb.MIN_N, "alpha": sb.ALPHA,
                    "models": scoreboard(get_db(), symbol, window)})
