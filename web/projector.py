"""The ``projector`` process: ``metrics``, ``predictions``, ``alerts``, ``feed`` -> SQL read tables.

Each batch is upserted (insert, or update on the primary key) and committed;
only then does the runner commit the Kafka offsets. Replaying a topic, or a
crash between the two commits, rewrites the same rows with the same values:
the projection is idempotent. Malformed messages go to the DLQ (the runner).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from events import contract, models
from events.contract import Alert, Bar, FeedStatus, Prediction
from events.kafka import Decoded, IdleClock, ShutdownFlag, StreamRunner
from events.settings import Settings

log = logging.getLogger(__name__)
CHUNK_ROWS = 500


def bar_row(b: Bar) -> dict[str, Any]:
    row = {c: getattr(b, c) for c in ("symbol", "bar_seconds", "start_ms", "open", "high", "low", "close", "volume",
                                      "count", "vwap")}
    row.update({c: getattr(b, c) for c in contract.BAR_FLOAT_FIELDS if c not in row})
    row["history"] = b.history
    return row


def prediction_row(p: Prediction) -> dict[str, Any]:
    return {"id": p.id, "symbol": p.symbol, "ts_ms": p.ts, "base_start_ms": p.base_start_ms,
            "bar_seconds": p.bar_seconds, "horizon_bars": p.horizon_bars, "base_close": p.base_close,
            "predicted_close": p.predicted_close, "lower": p.lower, "upper": p.upper,
            "interval_level": p.interval_level, "model_version": p.model_version, "skill": p.skill,
            **{f: getattr(p, f) for f in models.PREDICTION_RECORD_FIELDS}}


def alert_row(a: Alert) -> dict[str, Any]:
    return {"id": a.id, "rule_id": a.rule_id, "rule_version": a.rule_version, "user_id": a.user_id,
            "symbol": a.symbol, "state": a.state, "ts_ms": a.ts, "series": a.series, "op": a.op,
            "value": a.value, "threshold": a.threshold, "message": a.message, "trigger_event_id": a.trigger_event_id}


def feed_row(f: FeedStatus) -> dict[str, Any]:
    return {"symbol": f.symbol, "source": f.source, "state": f.state, "detail": f.detail,
            "last_tick_ms": f.last_tick_ms, "ts_ms": f.ts}


def rows_by_table(events: Sequence[contract.Event]) -> dict[type[models.Base], list[dict[str, Any]]]:
    """Pure: the rows each table gets from a batch, deduplicated by primary key (last wins)."""
    tables: dict[type[models.Base], dict[Any, dict[str, Any]]] = {
        models.BarRecord: {}, models.PredictionRecord: {}, models.AlertRecord: {}, models.FeedStatusRecord: {}}
    for e in events:
        if isinstance(e, Bar):
            tables[models.BarRecord][(e.symbol, e.bar_seconds, e.start_ms)] = bar_row(e)
        elif isinstance(e, Prediction):
            tables[models.PredictionRecord][e.id] = prediction_row(e)
        elif isinstance(e, Alert):
            tables[models.AlertRecord][e.id] = alert_row(e)
        elif isinstance(e, FeedStatus):
            tables[models.FeedStatusRecord][e.symbol] = feed_row(e)
    return {t: list(rows.values()) for t, rows in tables.items() if rows}


def upsert(session: Session, model: type[models.Base], rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE, on PostgreSQL and SQLite alike."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"no upsert for {dialect}")
    keys = [c.name for c in model.__table__.primary_key.columns]
    stmt = insert(model)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in rows[0] if c not in keys})
    for i in range(0, len(rows), CHUNK_ROWS):
        session.execute(stmt, rows[i:i + CHUNK_ROWS])  # executemany: one cached statement, batched values


def project(sessions: sessionmaker[Session], events: Sequence[contract.Event]) -> int:
    """Write one batch in one transaction; return the rows written."""
    tables = rows_by_table(events)
    if not tables:
        return 0
    with sessions() as session:
        for model, rows in tables.items():
            upsert(session, model, rows)
        session.commit()
    return sum(len(r) for r in tables.values())


def make_runner(settings: Settings, sessions: sessionmaker[Session], shutdown: ShutdownFlag,
                group_id: str = "tickerbell-projector") -> StreamRunner:
    def transform(batch: list[Decoded]) -> list[contract.Event]:
        project(sessions, [d.event for d in batch if d.event is not None])
        return []  # nothing to produce: the runner commits offsets after this returns

    types: dict[str, type[contract.Event]] = {
        settings.topic("metrics"): Bar, settings.topic("predictions"): Prediction, settings.topic("alerts"): Alert,
        settings.topic("feed"): FeedStatus}
    return StreamRunner(settings, group_id, types, transform, batch_size=2000, poll_timeout_s=0.5, shutdown=shutdown)


def run_projector(settings: Settings, sessions: sessionmaker[Session], shutdown: ShutdownFlag, *,
                  group_id: str = "tickerbell-projector", idle_stop_s: float | None = None,
                  redis_prefix: str = "tickerbell:", on_batch: Callable[[int], None] | None = None) -> int:
    """Project until shutdown (or ``idle_stop_s`` without input); return messages consumed."""
    import time

    import redis

    from web.status import heartbeat

    runner = make_runner(settings, sessions, shutdown, group_id)
    beat = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    idle = IdleClock(idle_stop_s, runner.consumer)
    last_beat = time.monotonic()

    def report() -> None:
        heartbeat(beat, redis_prefix, "projector", {"consumed": runner.stats.consumed, "dlq": runner.stats.dlq,
                                                    "last_event_ms": runner.stats.last_event_ts_ms})

    try:
        while not shutdown.is_set():
            n = runner.run_once()
            now = time.monotonic()
            if n:
                idle.busy()
                if on_batch is not None:
                    on_batch(n)
            elif idle.expired():
                break
            if now - last_beat > 2.0:
                last_beat = now
                report()
    finally:
        runner.close()
        report()
        beat.close()
    return runner.stats.consumed
