"""The ``projector`` process: ``metrics``, ``predictions``, ``alerts``, ``feed`` -> SQL read tables.

Beside the tables that copy events, ``forecast_scores`` joins the two: a
prediction is scored (``predict.scoreboard``) once the bar it forecasts is in
``bars``, in the same transaction as whichever of the two arrived last, so
either arrival order (live: prediction first; a replay: maybe a whole topic
first) ends with the same rows. The aggregates (live skill, p, coverage,
direction) are computed on read, and exported as Prometheus gauges here.

A consumer pipeline (``events.pipeline``): its sink upserts each batch (insert,
or update on the primary key) and commits; only then does the pipeline commit
the Kafka offsets. Replaying a topic, or a
crash between the two commits, rewrites the same rows with the same values:
the projection is idempotent. Malformed messages go to the DLQ (the pipeline).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from prometheus_client import Gauge
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from events import contract, models
from events.contract import Alert, Bar, FeedStatus, Prediction
from events.kafka import ShutdownFlag
from events.pipeline import Decoded, Pipeline
from events.settings import Settings
from predict import scoreboard as sb
from predict.metrics import significant

log = logging.getLogger(__name__)
CHUNK_ROWS = 500
#: a database outage (refused or dropped connection): the pipeline holds the batch and retries with
#: back-off, committing no offset, instead of crashing the process
RECOVERABLE: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)


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
            "value": a.value, "threshold": a.threshold, "message": a.message, "trigger_event_id": a.trigger_event_id,
            "evidence": dict(a.evidence) or None}


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
    from sqlalchemy import inspect
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    insert: Any
    if dialect == "postgresql":
        insert = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"no upsert for {dialect}")
    keys = [c.name for c in inspect(model).primary_key]
    stmt = insert(model)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in rows[0] if c not in keys})
    for i in range(0, len(rows), CHUNK_ROWS):
        session.execute(stmt, rows[i:i + CHUNK_ROWS])  # executemany: one cached statement, batched values


def project(sessions: sessionmaker[Session], events: Sequence[contract.Event]) -> int:
    """Write one batch in one transaction (its forecast scores with it); return the rows written."""
    tables = rows_by_table(events)
    if not tables:
        return 0
    with sessions() as session:
        for model, rows in tables.items():
            upsert(session, model, rows)
        scores = score_rows(session, tables.get(models.PredictionRecord, []), tables.get(models.BarRecord, []))
        if scores:
            upsert(session, models.ForecastScoreRecord, scores)
        session.commit()
        if scores:
            export_gauges(session, {(r["symbol"], r["model_version"]) for r in scores})
    return sum(len(r) for r in tables.values()) + len(scores)


# --- the live scoreboard ----------------------------------------------------------------

#: a bar looks for the predictions it settles among those based up to this many bars before it
MAX_HORIZON_BARS = 10
LIVE_SKILL = Gauge("tickerbell_forecast_live_skill", "Live skill against persistence (1 - MSE/MSE_persistence) "
                   "over the newest scored forecasts", ["symbol", "model_version"])
LIVE_SKILL_P = Gauge("tickerbell_forecast_live_skill_p", "HAC Diebold-Mariano p-value of the live skill",
                     ["symbol", "model_version"])
LIVE_N = Gauge("tickerbell_forecast_live_n", "Scored forecasts the live figures cover", ["symbol", "model_version"])
LIVE_COVERAGE = Gauge("tickerbell_forecast_live_coverage", "Share of scored forecasts whose interval held",
                      ["symbol", "model_version"])
NOMINAL_COVERAGE = Gauge("tickerbell_forecast_nominal_coverage", "The interval level the forecasts claim",
                         ["symbol", "model_version"])


def _chunks(items: list[Any], size: int = CHUNK_ROWS) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def score_rows(session: Session, predictions: list[dict[str, Any]], bars: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The score rows this batch settles: its predictions whose target bar is known, and the known
    predictions whose target (or base, whose move the last-move baseline reads) is one of its bars.
    Reads the tables after this batch's upserts, so the other side may come from any earlier batch."""
    P, B = models.PredictionRecord, models.BarRecord
    found: dict[str, models.PredictionRecord] = {}
    for ids in _chunks([p["id"] for p in predictions]):
        found.update({p.id: p for p in session.scalars(select(P).where(P.id.in_(ids)))})
    by_series: dict[tuple[str, int], list[int]] = {}
    for b in bars:
        by_series.setdefault((b["symbol"], b["bar_seconds"]), []).append(b["start_ms"])
    for (symbol, bar_seconds), starts in by_series.items():
        settles = set(starts)
        lowest = min(starts) - MAX_HORIZON_BARS * bar_seconds * 1000
        for p in session.scalars(select(P).where(P.symbol == symbol, P.bar_seconds == bar_seconds,
                                                 P.base_start_ms >= lowest, P.base_start_ms <= max(starts))):
            if p.base_start_ms in settles or sb.target_start_ms(p.base_start_ms, p.horizon_bars, bar_seconds) in settles:
                found[p.id] = p
    if not found:
        return []
    wanted: dict[tuple[str, int], set[int]] = {}
    for p in found.values():
        wanted.setdefault((p.symbol, p.bar_seconds), set()).update(
            {p.base_start_ms, sb.target_start_ms(p.base_start_ms, p.horizon_bars, p.bar_seconds)})
    known: dict[tuple[str, int, int], tuple[float, float | None]] = {}
    for (symbol, bar_seconds), starts_set in wanted.items():
        for chunk in _chunks(sorted(starts_set)):
            for sym, bs, start, close, change in session.execute(
                    select(B.symbol, B.bar_seconds, B.start_ms, B.close, B.change_pct).where(
                        B.symbol == symbol, B.bar_seconds == bar_seconds, B.start_ms.in_(chunk))):
                known[(sym, bs, start)] = (close, change)
    out = []
    for p in found.values():
        target = known.get((p.symbol, p.bar_seconds, sb.target_start_ms(p.base_start_ms, p.horizon_bars, p.bar_seconds)))
        if target is None:
            continue  # its bar has not closed yet: the bar's arrival scores it
        base = known.get((p.symbol, p.bar_seconds, p.base_start_ms))
        out.append(sb.score_prediction(
            prediction_id=p.id, symbol=p.symbol, bar_seconds=p.bar_seconds, model_version=p.model_version,
            base_start_ms=p.base_start_ms, horizon_bars=p.horizon_bars, base_close=p.base_close,
            predicted_close=p.predicted_close, lower=p.lower, upper=p.upper, interval_level=p.interval_level,
            actual_close=target[0], last_change_pct=base[1] if base else None).row())
    return out


def live_scores(session: Session, symbol: str, model_version: str, window: int = sb.WINDOW) -> list[models.ForecastScoreRecord]:
    """The newest ``window`` scores of one model on one symbol, oldest first."""
    S = models.ForecastScoreRecord
    rows = list(session.scalars(select(S).where(S.symbol == symbol, S.model_version == model_version)
                                .order_by(S.target_start_ms.desc(), S.prediction_id).limit(window)))
    return rows[::-1]


def scoreboard(session: Session, symbol: str, window: int = sb.WINDOW) -> list[dict[str, Any]]:
    """Per model version that forecast ``symbol``: its live figures over the newest ``window`` scores and
    what its newest prediction says about its holdout (skill, p, n, bar size, source, ranges); newest model first."""
    P, S = models.PredictionRecord, models.ForecastScoreRecord
    versions = set(session.scalars(select(P.model_version).where(P.symbol == symbol).distinct()))
    versions |= set(session.scalars(select(S.model_version).where(S.symbol == symbol).distinct()))
    out = []
    for version in versions:
        latest = session.scalars(select(P).where(P.symbol == symbol, P.model_version == version)
                                 .order_by(P.base_start_ms.desc()).limit(1)).first()
        live = sb.aggregate(live_scores(session, symbol, version, window))
        holdout = None if latest is None else {
            "skill": latest.skill, "p": latest.skill_p, "n": latest.holdout_n,
            "from_ms": latest.holdout_from_ms, "to_ms": latest.holdout_to_ms,
            "trained_from_ms": latest.trained_from_ms, "trained_to_ms": latest.trained_to_ms,
            "bar_seconds": latest.trained_bar_seconds, "data_source": latest.data_source,
            "significant": significant(latest.skill, latest.skill_p, latest.holdout_n, min_n=sb.MIN_N)}
        out.append({"model_version": version, "bar_seconds": latest.bar_seconds if latest else None,
                    "last_prediction_ms": latest.base_start_ms if latest else None,
                    "window": window, "live": live, "holdout": holdout,
                    "better_than_no_change": live["verdict"] == "better" or bool(holdout and holdout["significant"])})
    out.sort(key=lambda m: (m["last_prediction_ms"] or 0, m["model_version"]), reverse=True)
    return out


def export_gauges(session: Session, keys: set[tuple[str, str]]) -> None:
    """Set the live gauges of every (symbol, model version) this batch scored."""
    for symbol, version in keys:
        agg = sb.aggregate(live_scores(session, symbol, version))
        labels = {"symbol": symbol, "model_version": version}
        LIVE_N.labels(**labels).set(agg["n"])
        for gauge, value in ((LIVE_SKILL, agg["skill"]), (LIVE_SKILL_P, agg["dm_p"]),
                             (LIVE_COVERAGE, agg["coverage"]), (NOMINAL_COVERAGE, agg["nominal_coverage"])):
            gauge.labels(**labels).set(float("nan") if value is None else value)


def events_of(batch: list[Decoded]) -> list[contract.Event]:
    """The projector's step: the decoded events of a batch (pure; tombstones carry nothing)."""
    return [d.event for d in batch if d.event is not None]


def make_runner(settings: Settings, sessions: sessionmaker[Session], shutdown: ShutdownFlag,
                group_id: str = "tickerbell-projector") -> Pipeline[contract.Event]:
    """The projector's pipeline: decode -> events -> (sink) one SQL transaction -> commit offsets."""
    def sink(events: list[contract.Event]) -> None:
        project(sessions, events)

    types: dict[str, type[contract.Event]] = {
        settings.topic("metrics"): Bar, settings.topic("predictions"): Prediction, settings.topic("alerts"): Alert,
        settings.topic("feed"): FeedStatus}
    return Pipeline(settings, group_id, types, events_of, sink, batch_size=2000, poll_timeout_s=0.5, shutdown=shutdown,
                    recoverable=RECOVERABLE)


def run_projector(settings: Settings, sessions: sessionmaker[Session], shutdown: ShutdownFlag, *,
                  group_id: str = "tickerbell-projector", idle_stop_s: float | None = None,
                  redis_prefix: str = "tickerbell:", on_batch: Callable[[int], None] | None = None) -> int:
    """Project until shutdown (or ``idle_stop_s`` without input); return messages consumed."""
    import time

    import redis

    from web.status import heartbeat

    runner = make_runner(settings, sessions, shutdown, group_id)
    beat = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    last_beat = time.monotonic()

    def report() -> None:
        heartbeat(beat, redis_prefix, "projector", {"consumed": runner.stats.consumed, "dlq": runner.stats.dlq,
                                                    "last_event_ms": runner.stats.last_event_ts_ms})

    def after_batch(n: int) -> None:
        nonlocal last_beat
        if n and on_batch is not None:
            on_batch(n)
        now = time.monotonic()
        if now - last_beat > 2.0:
            last_beat = now
            report()

    try:
        runner.run(idle_stop_s=idle_stop_s, on_batch=after_batch)
    finally:
        report()
        beat.close()
    return runner.stats.consumed
