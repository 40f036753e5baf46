"""Watchlists and their symbols."""

from __future__ import annotations

from flask import Response, jsonify

from web.api import body, bp, settings
from web.auth import uid
from web.db import get_db
from web.limits import api_limits
from web.store import watchlists as wls


@bp.get("/watchlists")
def list_watchlists() -> Response:
    return jsonify([wls.watchlist_json(w) for w in wls.list_watchlists(get_db(), uid())])


@bp.post("/watchlists")
def create_watchlist() -> tuple[Response, int]:
    data = body()
    wl = wls.create_watchlist(get_db(), uid(), data.get("name"), data.get("symbols"), api_limits())
    return jsonify(wls.watchlist_json(wl)), 201


@bp.get("/watchlists/<int:watchlist_id>")
def get_watchlist(watchlist_id: int) -> Response:
    return jsonify(wls.watchlist_json(wls.get_watchlist(get_db(), uid(), watchlist_id)))


@bp.patch("/watchlists/<int:watchlist_id>")
def rename_watchlist(watchlist_id: int) -> Response:
    wl = wls.rename_watchlist(get_db(), uid(), watchlist_id, body().get("name"))
    return jsonify(wls.watchlist_json(wl))


@bp.delete("/watchlists/<int:watchlist_id>")
def delete_watchlist(watchlist_id: int) -> tuple[str, int]:
    wls.delete_watchlist(get_db(), uid(), watchlist_id)
    return "", 204


@bp.post("/watchlists/<int:watchlist_id>/symbols")
def add_symbol(watchlist_id: int) -> tuple[Response, int]:
    wl = wls.add_symbol(get_db(), settings(), uid(), watchlist_id, body().get("symbol"), api_limits())
    return jsonify(wls.watchlist_json(wl)), 201


@bp.delete("/watchlists/<int:watchlist_id>/symbols/<symbol>")
def remove_symbol(watchlist_id: int, symbol: str) -> Response:
    wl = wls.remove_symbol(get_db(), settings(), uid(), watchlist_id, symbol)
    return jsonify(wls.watchlist_json(wl))
