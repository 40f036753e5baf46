"""The dispatcher process: ``alerts`` -> delivery rows -> one Celery task per delivery.

A consumer pipeline (``events.pipeline``) whose sink, for each batch, inserts a
``deliveries`` row per (alert, channel): a rule's firing (first notice or
reminder) and, with ``notify_on_resolve``, its resolve, to the owner's channels
on the rule; a stale-feed alert and its resolve to every user watching the
symbol (``watcher_channels``) - a pair
already present is left alone (unique alert_id + channel_id) - commits,
enqueues the ids still ``pending``; only then does the pipeline commit the
Kafka offsets. A crash anywhere replays the batch, which inserts
nothing new and re-enqueues ids the workers' claim guard makes harmless.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

import msgspec
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from events import models
from events.contract import Alert
from events.kafka import ShutdownFlag
from events.pipeline import Decoded, Pipeline
from events.settings import Settings

log = logging.getLogger(__name__)


def _recoverable() -> tuple[type[BaseException], ...]:
    import kombu.exceptions
    import redis.exceptions
    from sqlalchemy.exc import DBAPIError

    return (DBAPIError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            kombu.exceptions.OperationalError, ConnectionError, TimeoutError)


RECOVERABLE = _recoverable()

__all__ = ["Dispatcher", "record_deliveries", "watcher_channels"]

# enqueue(ids) or enqueue(ids, countdown_s=...): hand delivery ids to the workers
Enqueue = Callable[..., None]


def _insert(session: Session) -> Any:
    """The dialect's INSERT that knows ON CONFLICT DO NOTHING (PostgreSQL and SQLite both do)."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def watcher_channels(session: Session, symbols: Iterable[str]) -> dict[str, dict[int, list[int]]]:
    """symbol -> user -> the channels a system alert (stale feed) on it reaches for that user.

    A user watches a symbol through a watchlist holding it or an enabled rule on it (directly
    or through a watchlist). Their channels are those of their enabled rules watching the
    symbol: the ones they chose to hear about it on; a user who only has it on a watchlist
    gets all their channels. Either way only active users, enabled channels, and an email
    channel only once confirmed (the worker would refuse it).
    """
    symbols = set(symbols)
    if not symbols:
        return {}
    W, WS, R, RC, C = models.Watchlist, models.WatchlistSymbol, models.Rule, models.RuleChannel, models.Channel
    watchers: dict[str, set[int]] = {s: set() for s in symbols}
    lists: dict[int, set[str]] = {}
    for symbol, user_id, list_id in session.execute(
            select(WS.symbol, W.user_id, W.id).join(W, WS.watchlist_id == W.id).where(WS.symbol.in_(symbols))):
        watchers[symbol].add(user_id)
        lists.setdefault(list_id, set()).add(symbol)
    chosen: dict[tuple[str, int], set[int]] = {}
    rules = select(R.id, R.user_id, R.symbol, R.watchlist_id).where(
        R.enabled.is_(True), R.symbol.in_(symbols) | R.watchlist_id.in_(lists or {0}))
    rule_symbols: dict[int, tuple[int, set[str]]] = {}
    for rule_id, user_id, rule_symbol, rule_list in session.execute(rules):
        on = {rule_symbol} & symbols if rule_symbol else lists.get(rule_list or 0, set())
        rule_symbols[rule_id] = (user_id, on)
        for sym in on:
            watchers[sym].add(user_id)
    usable = C.enabled.is_(True) & ((C.kind != "email") | C.confirmed_at.is_not(None))
    if rule_symbols:
        for rule_id, channel_id in session.execute(
                select(RC.rule_id, RC.channel_id).join(C, RC.channel_id == C.id)
                .where(RC.rule_id.in_(rule_symbols), usable)):
            user_id, on = rule_symbols[rule_id]
            for sym in on:
                chosen.setdefault((sym, user_id), set()).add(channel_id)
    users = set(session.scalars(select(models.User.id).where(
        models.User.id.in_({u for us in watchers.values() for u in us}), models.User.is_active.is_(True))))
    everything: dict[int, list[int]] = {}
    if users:
        for channel_id, user_id in session.execute(
                select(C.id, C.user_id).where(C.user_id.in_(users), usable).order_by(C.id)):
            everything.setdefault(user_id, []).append(channel_id)
    out: dict[str, dict[int, list[int]]] = {}
    for symbol, us in watchers.items():
        for user_id in sorted(us & users):
            picked = sorted(chosen[(symbol, user_id)]) if (symbol, user_id) in chosen else everything.get(user_id, [])
            if picked:
                out.setdefault(symbol, {})[user_id] = picked
    return out


def _targets(session: Session, alerts: Iterable[Alert]) -> list[tuple[Alert, int, list[int]]]:
    """(alert, user, channels) to record: a rule's alert (firing, or resolved with
    ``notify_on_resolve``) to the channels it carries, checked against its owner; a system
    alert (rule 0, the stale feed, firing and resolved) to every user watching its symbol."""
    alerts = list(alerts)
    system = [a for a in alerts if a.rule_id == 0]
    ruled = [a for a in alerts if a.rule_id and a.channel_ids and a.user_id]
    out: list[tuple[Alert, int, list[int]]] = []
    if ruled:
        wanted = {c for a in ruled for c in a.channel_ids}
        owners = dict(session.execute(
            select(models.Channel.id, models.Channel.user_id).where(models.Channel.id.in_(wanted))).all())
        for a in ruled:
            mine = [c for c in dict.fromkeys(a.channel_ids) if owners.get(c) == a.user_id]
            if mine:
                out.append((a, a.user_id, mine))
    if system:
        by_symbol = watcher_channels(session, {a.symbol for a in system})
        for a in system:
            for user_id, channels in by_symbol.get(a.symbol, {}).items():
                out.append((msgspec.structs.replace(a, user_id=user_id, channel_ids=channels), user_id, channels))
    return out


def record_deliveries(session: Session, alerts: Iterable[Alert], digest_window_s: float = 0.0) -> list[int]:
    """Insert the delivery rows of alerts (idempotent: one per (alert, channel)) and return the ids still pending.

    A channel id that does not exist or belongs to another user than the
    alert's is ignored (a rule can only notify its owner's channels). With a
    digest window, a row is due with the channel's open window (the earliest
    first-attempt row still waiting), or ``digest_window_s`` from now.
    """
    targets = _targets(session, alerts)
    if not targets:
        return []
    wanted = {c for _, _, channels in targets for c in channels}
    now = datetime.now(timezone.utc)
    due: dict[int, datetime] = {}
    if digest_window_s > 0:
        opened = session.execute(
            select(models.Delivery.channel_id, func.min(models.Delivery.next_attempt_at))
            .where(models.Delivery.channel_id.in_(wanted), models.Delivery.status == "pending",
                   models.Delivery.attempts == 0, models.Delivery.next_attempt_at > now)
            .group_by(models.Delivery.channel_id)).all()
        due = {c: (t if t.tzinfo else t.replace(tzinfo=timezone.utc)) for c, t in opened if t is not None}
        window_end = now + timedelta(seconds=digest_window_s)
        for c in wanted:
            due.setdefault(c, window_end)
    rows: list[dict[str, Any]] = []
    for a, user_id, channels in targets:
        payload = msgspec.to_builtins(a)
        for channel_id in channels:
            rows.append({"alert_id": a.id, "channel_id": channel_id, "user_id": user_id, "status": "pending",
                         "attempts": 0, "next_attempt_at": due.get(channel_id, now), "payload": payload,
                         "created_at": now})
    insert = _insert(session)
    session.execute(insert(models.Delivery).values(rows).on_conflict_do_nothing(
        index_elements=["alert_id", "channel_id"]))
    ids = session.scalars(select(models.Delivery.id).where(
        models.Delivery.alert_id.in_({a.id for a, _, _ in targets}), models.Delivery.status == "pending")).all()
    session.commit()
    return list(ids)


class Dispatcher:
    """The dispatcher's pipeline: ``alerts`` -> (sink) delivery rows + Celery tasks -> commit offsets.

    The step is the decoded alerts themselves; the sink records and enqueues them. A database
    or Redis outage (``RECOVERABLE``) holds the batch and retries it with back-off: nothing is
    committed before the delivery rows and the tasks exist. Malformed alerts go to the DLQ.
    """

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], enqueue: Enqueue, *,
                 shutdown: ShutdownFlag | None = None, group_id: str = "alerts-dispatch",
                 batch_size: int = 500, poll_timeout_s: float = 0.005, digest_window_s: float = 0.0) -> None:
        self.settings = settings
        self.sessions = sessions
        self.enqueue = enqueue
        self.digest_window_s = digest_window_s
        self.topic = settings.topic("alerts")
        self.pipeline: Pipeline[Alert] = Pipeline(
            settings, group_id, {self.topic: Alert}, alerts_of, self.deliver, batch_size=batch_size,
            poll_timeout_s=poll_timeout_s, shutdown=shutdown, consumer_overrides={"fetch.wait.max.ms": 5},
            recoverable=RECOVERABLE)
        self.shutdown = self.pipeline.shutdown
        self.consumer = self.pipeline.consumer
        self._backoff = self.pipeline.backoff
        self.enqueued = 0

    @property
    def consumed(self) -> int:
        return self.pipeline.stats.consumed

    def deliver(self, alerts: list[Alert]) -> None:
        """The sink: insert the delivery rows (idempotent), then enqueue the ids still pending.
        Raises a ``RECOVERABLE`` error while the database or Redis is away."""
        with self.sessions() as session:
            ids = record_deliveries(session, alerts, self.digest_window_s)
        for a in alerts:
            if a.channel_ids:
                log.info("alert %s: %s %s for rule %s -> channels %s", a.state, a.symbol, a.op, a.rule_id,
                         a.channel_ids, extra={"event_id": a.id})
        if ids:
            if self.digest_window_s:
                self.enqueue(ids, countdown_s=self.digest_window_s)
            else:
                self.enqueue(ids)
        self.enqueued += len(ids)

    def run_once(self) -> int:
        """One batch (or the retry of a held one); return how many messages it held."""
        return self.pipeline.run_once()

    def run(self, *, idle_stop_s: float | None = None) -> None:
        self.pipeline.run(idle_stop_s=idle_stop_s)


def alerts_of(batch: list[Decoded]) -> list[Alert]:
    """The dispatcher's step: the decoded alerts of a batch (pure)."""
    return [d.event for d in batch if isinstance(d.event, Alert)]


def celery_enqueue(settings: Settings, queue: str) -> Enqueue:
    """An enqueue function sending ``alerts.deliver`` tasks by name to ``queue`` on Redis."""
    from celery import Celery

    app = Celery("tickerbell-dispatch", broker=settings.redis_url)
    app.conf.update(broker_connection_retry_on_startup=True, task_ignore_result=True)

    def enqueue(ids: list[int], countdown_s: float | None = None) -> None:
        with app.producer_or_acquire() as producer:
            for delivery_id in ids:
                app.send_task("alerts.deliver", args=[delivery_id], queue=queue, producer=producer,
                              countdown=countdown_s)

    return enqueue
