"""Demand: which symbols somebody watches, as the compacted ``watched`` topic.

A symbol is watched while any watchlist holds it or any rule names it (a rule on a
watchlist watches that list's symbols). The ``watched_symbols`` table is the last demand
announced; whenever a transaction changes watchlists, their symbols or rules, the demand
is recomputed at commit, compared with that table, and each change is queued in the
transactional outbox in the same transaction: a ``Watched`` event (with the number of
users watching) or a tombstone. So the topic can never disagree with the database for
longer than the relay takes, however the change was made (ORM cascade, bulk delete,
the admin CLI, a migration script).

The listener is installed on every session whose ``info`` carries the settings
(:func:`events.db.session_factory` puts them there); the relay refills an emptied topic
from the table at start (:func:`heal_watched_topic`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Delete, Update, delete, event, select, union_all
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from events import contract, models
from events.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["current_demand", "heal_watched_topic", "install", "sync_demand"]

_WATCHED_TABLES = {models.Watchlist.__tablename__, models.WatchlistSymbol.__tablename__, models.Rule.__tablename__}
_WATCHED_CLASSES = (models.Watchlist, models.WatchlistSymbol, models.Rule)
_DIRTY = "tickerbell_demand_dirty"


def current_demand(session: Session) -> dict[str, int]:
    """symbol -> number of distinct users watching it, from watchlists and rules."""
    wl = models.Watchlist
    ws = models.WatchlistSymbol
    rule = models.Rule
    pairs = union_all(
        select(ws.symbol.label("symbol"), wl.user_id.label("user_id")).join(wl, ws.watchlist_id == wl.id),
        select(rule.symbol.label("symbol"), rule.user_id.label("user_id")).where(rule.symbol.is_not(None)),
        select(ws.symbol.label("symbol"), rule.user_id.label("user_id"))
        .join(rule, rule.watchlist_id == ws.watchlist_id),
    ).subquery()
    watchers: dict[str, set[int]] = {}
    for symbol, user_id in session.execute(select(pairs.c.symbol, pairs.c.user_id).distinct()):
        if symbol:
            watchers.setdefault(symbol, set()).add(user_id)
    return {symbol: len(users) for symbol, users in watchers.items()}


def _now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)


def _queue(session: Session, settings: Settings, symbol: str, watchers: int | None, ts_ms: int) -> None:
    topic = settings.topic("watched")
    if watchers is None:
        session.add(models.OutboxEvent(topic=topic, key=symbol.encode(), value=None))
        return
    ev = contract.Watched(id=contract.watched_id(symbol, ts_ms), ts=ts_ms, symbol=symbol, watchers=watchers)
    session.add(models.OutboxEvent(topic=topic, key=ev.key, value=contract.encode(ev)))


def sync_demand(session: Session, settings: Settings) -> dict[str, int | None]:
    """Bring ``watched_symbols`` (and, through the outbox, the topic) in line with the database.

    Returns the changes queued (symbol -> watchers, ``None`` for no longer watched). The
    caller commits; called by the commit hook, and directly by tools that need it now.
    """
    want = current_demand(session)
    held = {row.symbol: row for row in session.scalars(select(models.WatchedSymbol))}
    changes: dict[str, int | None] = {}
    ts_ms = _now_ms()
    for symbol, n in want.items():
        row = held.get(symbol)
        if row is None:
            session.add(models.WatchedSymbol(symbol=symbol, watchers=n))
        elif row.watchers != n:
            row.watchers = n
        else:
            continue
        changes[symbol] = n
        _queue(session, settings, symbol, n, ts_ms)
    gone = sorted(set(held) - set(want))
    if gone:
        session.execute(delete(models.WatchedSymbol).where(models.WatchedSymbol.symbol.in_(gone)))
        for symbol in gone:
            changes[symbol] = None
            _queue(session, settings, symbol, None, ts_ms)
    if changes:
        log.info("demand: %d symbols changed (%s)", len(changes),
                 ", ".join(f"{s}={'-' if n is None else n}" for s, n in sorted(changes.items())[:10]))
    return changes


def _mark_if_watched_changed(session: Session, _ctx: Any, _instances: Any) -> None:
    if session.info.get(_DIRTY):
        return
    for obj in (*session.new, *session.dirty, *session.deleted):
        if isinstance(obj, _WATCHED_CLASSES):
            session.info[_DIRTY] = True
            return


def _mark_bulk(state: ORMExecuteState) -> None:
    stmt = state.statement
    if isinstance(stmt, (Delete, Update)) and getattr(stmt.table, "name", None) in _WATCHED_TABLES:
        state.session.info[_DIRTY] = True


def _sync_before_commit(session: Session) -> None:
    settings = session.info.get("settings")
    if settings is None:
        return
    session.flush()  # runs before_flush, which may mark the session
    if not session.info.pop(_DIRTY, False):
        return
    sync_demand(session, settings)
    session.flush()


def _forget(session: Session, *_args: Any) -> None:
    session.info.pop(_DIRTY, None)


def install(factory: sessionmaker[Session], settings: Settings) -> sessionmaker[Session]:
    """Make every session of ``factory`` keep the demand in step (idempotent)."""
    factory.kw.setdefault("info", {})["settings"] = settings
    return factory


event.listen(Session, "before_flush", _mark_if_watched_changed)
event.listen(Session, "do_orm_execute", _mark_bulk)
event.listen(Session, "before_commit", _sync_before_commit)
event.listen(Session, "after_rollback", _forget)


def announce_all_watched(session: Session, settings: Settings) -> int:
    """Queue the whole held demand again (caller commits): refills a topic that lost it."""
    ts_ms = _now_ms()
    rows = session.scalars(select(models.WatchedSymbol).order_by(models.WatchedSymbol.symbol)).all()
    for row in rows:
        _queue(session, settings, row.symbol, row.watchers, ts_ms)
    return len(rows)


def heal_watched_topic(settings: Settings, sessions: sessionmaker[Session]) -> int:
    """At relay start: bring the table in line (a database edited while nothing ran), and
    when the ``watched`` topic holds nothing while demand exists, announce it all again."""
    from events.outbox import topic_is_empty

    with sessions() as session:
        sync_demand(session, settings)
        session.commit()
        if session.scalar(select(models.WatchedSymbol.symbol).limit(1)) is None:
            return 0
    if not topic_is_empty(settings, settings.topic("watched")):
        return 0
    with sessions() as session:
        queued = announce_all_watched(session, settings)
        session.commit()
    log.warning("demand: topic %s was empty while %d symbols are watched; announcing them again",
                settings.topic("watched"), queued)
    return queued
