"""Watchlists: several per user, symbols validated by the contract's pattern."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from events import contract, models
from events.outbox import republish_watchlist_rules
from events.settings import Settings
from web.store.errors import Conflict, Invalid, LimitExceeded, NotFound
from web.limits import ApiLimits
from web.store.names import NO_CONTROL, has_control

_SYMBOL_TYPE = contract.Symbol


def normalise_symbol(raw: Any, field: str = "symbol") -> str:
    symbol = str(raw or "").strip().upper()
    try:
        return msgspec.convert(symbol, _SYMBOL_TYPE)
    except msgspec.ValidationError:
        raise Invalid({field: f"{symbol or 'an empty value'} is not a ticker symbol "
                                       "(1-16 of A-Z 0-9 . - = ^, e.g. AAPL, BRK.B, ^GSPC, BTC-USD)"}) from None


def watchlist_json(wl: models.Watchlist) -> dict[str, Any]:
    return {"id": wl.id, "name": wl.name, "symbols": [s.symbol for s in wl.symbols],
            "created_at": wl.created_at.isoformat()}


def list_watchlists(session: Session, user_id: int) -> list[models.Watchlist]:
    return list(session.scalars(select(models.Watchlist).where(models.Watchlist.user_id == user_id).order_by(models.Watchlist.id)))


def get_watchlist(session: Session, user_id: int, watchlist_id: int) -> models.Watchlist:
    wl = session.get(models.Watchlist, watchlist_id)
    if wl is None or wl.user_id != user_id:
        raise NotFound("watchlist")
    return wl


def _name(raw: Any) -> str:
    name = str(raw or "").strip()
    if not 1 <= len(name) <= 100:
        raise Invalid({"name": "give the list a name (1-100 characters)"})
    if has_control(name):
        raise Invalid({"name": NO_CONTROL})
    return name


def _check_unique(session: Session, user_id: int, name: str, except_id: int | None = None) -> None:
    q = select(models.Watchlist.id).where(models.Watchlist.user_id == user_id, models.Watchlist.name == name)
    found = session.scalar(q)
    if found is not None and found != except_id:
        raise Conflict(f"you already have a watchlist named {name!r}", {"name": "already used"})


def create_watchlist(session: Session, user_id: int, name: Any, symbols: Any = None,
                     limits: ApiLimits = ApiLimits()) -> models.Watchlist:
    name = _name(name)
    if symbols is not None and not isinstance(symbols, list):
        raise Invalid({"symbols": "must be a list of ticker symbols"})
    if symbols is not None and len(symbols) > limits.symbols_per_watchlist:
        raise LimitExceeded("symbols_per_watchlist", limits.symbols_per_watchlist, "symbols in one watchlist")
    clean = []
    for i, raw in enumerate(symbols or []):
        sym = normalise_symbol(raw, f"symbols[{i}]")
        if sym not in clean:
            clean.append(sym)
    count = session.scalar(select(func.count()).select_from(models.Watchlist).where(models.Watchlist.user_id == user_id))
    if (count or 0) >= limits.watchlists_per_user:
        raise LimitExceeded("watchlists_per_user", limits.watchlists_per_user, "watchlists per account")
    _check_unique(session, user_id, name)
    wl = models.Watchlist(user_id=user_id, name=name)
    wl.symbols = [models.WatchlistSymbol(symbol=s, position=i) for i, s in enumerate(clean)]
    session.add(wl)
    session.commit()
    return wl


def rename_watchlist(session: Session, user_id: int, watchlist_id: int, name: Any) -> models.Watchlist:
    wl = get_watchlist(session, user_id, watchlist_id)
    name = _name(name)
    _check_unique(session, user_id, name, except_id=wl.id)
    wl.name = name
    session.commit()
    return wl


def _rules_using(session: Session, watchlist_id: int) -> list[models.Rule]:
    return list(session.scalars(select(models.Rule).where(models.Rule.watchlist_id == watchlist_id)))


def delete_watchlist(session: Session, user_id: int, watchlist_id: int) -> None:
    wl = get_watchlist(session, user_id, watchlist_id)
    rules = _rules_using(session, wl.id)
    if rules:
        names = ", ".join(r.name or f"#{r.id}" for r in rules[:5])
        raise Conflict(f"rules watch this list ({names}); delete them or point them elsewhere first")
    session.delete(wl)
    session.commit()


def add_symbol(session: Session, settings: Settings, user_id: int, watchlist_id: int, raw: Any,
               limits: ApiLimits = ApiLimits()) -> models.Watchlist:
    wl = get_watchlist(session, user_id, watchlist_id)
    symbol = normalise_symbol(raw)
    if any(s.symbol == symbol for s in wl.symbols):
        raise Conflict(f"{symbol} is already in {wl.name}", {"symbol": "already in the list"})
    if len(wl.symbols) >= limits.symbols_per_watchlist:
        raise LimitExceeded("symbols_per_watchlist", limits.symbols_per_watchlist, f"symbols in {wl.name}")
    position = 1 + max((s.position for s in wl.symbols), default=-1)
    wl.symbols.append(models.WatchlistSymbol(symbol=symbol, position=position))
    session.flush()
    republish_watchlist_rules(session, wl.id, settings)
    session.commit()
    return wl


def remove_symbol(session: Session, settings: Settings, user_id: int, watchlist_id: int, raw: Any) -> models.Watchlist:
    wl = get_watchlist(session, user_id, watchlist_id)
    symbol = str(raw or "").strip().upper()
    row = next((s for s in wl.symbols if s.symbol == symbol), None)
    if row is None:
        raise NotFound(f"symbol {symbol} in this watchlist")
    if len(wl.symbols) == 1 and _rules_using(session, wl.id):
        raise Conflict("rules watch this list; it must keep at least one symbol")
    wl.symbols.remove(row)
    session.flush()
    republish_watchlist_rules(session, wl.id, settings)
    session.commit()
    return wl


def user_symbols(session: Session, user_id: int) -> list[str]:
    """Every symbol in any of the user's watchlists, in list order."""
    rows = session.execute(
        select(models.WatchlistSymbol.symbol, func.min(models.WatchlistSymbol.position))
        .join(models.Watchlist).where(models.Watchlist.user_id == user_id)
        .group_by(models.WatchlistSymbol.symbol)
    ).all()
    return [r[0] for r in sorted(rows, key=lambda r: (r[1], r[0]))]
