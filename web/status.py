"""The status page's numbers: per topic and consumer group rates, lag, last event time, DLQ counts.

Rates are differences between two samples of end offsets (topics) and
committed offsets (groups). The previous sample is kept in Redis, so a page
refresh after a few seconds has a rate without waiting; the first view takes
two samples ``SAMPLE_S`` apart. Processes that report heartbeats
(``projector``, ``bridge``) add their own counters. :func:`forecast_drift`
adds the models whose live interval coverage has drifted from nominal (from
the ``forecast_scores`` projection, so it needs the database, not Kafka).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition

from events.contract import DLQ_SUFFIX
from events.kafka import admin_client, topic_specs
from events.pipeline_read import end_offsets
from events.settings import Settings
from predict import scoreboard as sb

log = logging.getLogger(__name__)

SAMPLE_S = 1.0
HEARTBEAT_TTL_S = 120
#: at most this many (symbol, model version) pairs are checked per view (a safety net, as the group cap)
DRIFT_MAX_PAIRS = 2000


def may_view(user: Any) -> bool:
    """Who may see the numbers (page and ``/api/status``): administrators only.

    A view names every consumer group and topic of the deployment and costs
    Kafka admin calls over all of them: nothing for an ordinary account to see or to repeat.
    """
    return bool(getattr(user, "is_authenticated", False) and getattr(user, "is_admin", False))


def heartbeat(client: redis.Redis, prefix: str, process: str, stats: dict[str, Any]) -> None:
    """Record a process's counters (called by projector and bridge after each batch).

    Best effort: while Redis is away the status page just lacks this process; the
    process itself carries on (it must not die for want of a status record).
    """
    try:
        client.set(f"{prefix}proc:{process}",
                   json.dumps({**stats, "process": process, "at_ms": int(time.time() * 1000)}), ex=HEARTBEAT_TTL_S)
    except redis.RedisError as exc:
        log.warning("status heartbeat of %s not recorded: %s", process, exc)


def heartbeats(client: redis.Redis, prefix: str) -> list[dict[str, Any]]:
    keys = sorted(client.scan_iter(f"{prefix}proc:*", count=100))
    values = client.mget(keys) if keys else []
    return [json.loads(v) for v in values if v]


def _sample(settings: Settings, admin: Any, consumer: Consumer, names: list[str]) -> dict[str, Any]:
    meta = admin.list_topics(timeout=5).topics
    topics: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in meta:
            continue
        ends = end_offsets(consumer, name, len(meta[name].partitions))
        topics[name] = {"total": sum(ends), "ends": ends}
    groups: dict[str, dict[str, Any]] = {}
    listed = admin.list_consumer_groups().result(timeout=10).valid
    # every group (bounded only as a safety net: a shared broker can hold thousands)
    gids = sorted(g.group_id for g in listed if not g.group_id.startswith(("tickerbell-status", "reader-", "size-")))[:5000]
    futures = {gid: admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(gid)])[gid] for gid in gids}
    for gid, fut in futures.items():
        res = fut.result(timeout=10)
        committed = lag = 0
        seen = set()
        for tp in res.topic_partitions:
            if tp.topic not in topics or tp.offset < 0:
                continue
            seen.add(tp.topic)
            committed += tp.offset
            lag += max(0, topics[tp.topic]["ends"][tp.partition] - tp.offset)
        if seen:
            groups[gid] = {"committed": committed, "lag": lag, "topics": sorted(seen)}
    return {"t": time.time(), "topics": {k: v["total"] for k, v in topics.items()}, "groups": groups,
            "_ends": {k: v["ends"] for k, v in topics.items()}}


def _last_event_ms(consumer: Consumer, ends: dict[str, list[int]]) -> dict[str, int]:
    """Broker timestamp of the newest message of each topic (reads one message per partition)."""
    assign = [TopicPartition(t, p, end - 1) for t, es in ends.items() for p, end in enumerate(es) if end > 0]
    if not assign:
        return {}
    consumer.assign(assign)
    out: dict[str, int] = {}
    wanted = len(assign)
    deadline = time.monotonic() + 2.0
    got = 0
    while got < wanted and time.monotonic() < deadline:
        for m in consumer.consume(wanted, 0.2):
            if m.error() is None:
                got += 1
                _kind, ts = m.timestamp()
                topic = m.topic() or ""
                out[topic] = max(out.get(topic, 0), ts)
    consumer.unassign()
    return out


def collect(settings: Settings, client: redis.Redis, prefix: str) -> dict[str, Any]:
    names = [s.name for s in topic_specs(settings)]
    admin = admin_client(settings)
    consumer = Consumer({**settings.kafka_common(), "group.id": "tickerbell-status", "enable.auto.commit": False,
                         "enable.partition.eof": False})
    try:
        now = _sample(settings, admin, consumer, names)
        key = f"{prefix}status:sample"
        raw = client.get(key)
        prev = json.loads(raw) if raw else None
        if prev is None or not 0.5 <= now["t"] - prev["t"] <= 300:
            prev = now
            time.sleep(SAMPLE_S)  # a sampling interval for the rate, not synchronisation
            now = _sample(settings, admin, consumer, names)
        client.set(key, json.dumps({k: v for k, v in now.items() if k != "_ends"}), ex=600)
        dt = max(1e-3, now["t"] - prev["t"])
        last_ms = _last_event_ms(consumer, now["_ends"])
    finally:
        consumer.close()
    topics = [
        {"topic": name, "messages": total, "per_s": (total - prev["topics"].get(name, total)) / dt,
         "last_event_ms": last_ms.get(name), "dlq": name.endswith(DLQ_SUFFIX)}
        for name, total in now["topics"].items()
    ]
    groups = [
        {"group": gid, "lag": g["lag"], "topics": g["topics"],
         "per_s": (g["committed"] - prev["groups"].get(gid, g)["committed"]) / dt}
        for gid, g in sorted(now["groups"].items())
    ]
    dlq = {t["topic"][: -len(DLQ_SUFFIX)]: t["messages"] for t in topics if t["dlq"]}
    return {"sampled_over_s": round(dt, 2), "topics": [t for t in topics if not t["dlq"]], "groups": groups,
            "dlq": dlq, "processes": heartbeats(client, prefix)}


def forecast_drift(session: Any) -> dict[str, Any]:
    """Per model version and symbol with at least ``sb.MIN_N`` scored forecasts (over the scoreboard's
    rolling window): those whose interval coverage is more than ``sb.COVERAGE_MARGIN`` off nominal.

    The flag is the scoreboard's own (:func:`predict.scoreboard.aggregate`), so the status page and the
    symbol page never disagree on which model drifts.
    """
    from sqlalchemy import func, select

    from events import models
    from web.projector import live_scores

    S = models.ForecastScoreRecord
    pairs = session.execute(select(S.symbol, S.model_version).group_by(S.symbol, S.model_version)
                            .having(func.count() >= sb.MIN_N).order_by(S.symbol, S.model_version)
                            .limit(DRIFT_MAX_PAIRS)).all()
    flagged = []
    for symbol, version in pairs:
        live = sb.aggregate(live_scores(session, symbol, version))
        if live["coverage_flag"]:
            flagged.append({"symbol": symbol, "model_version": version, "n": live["n"], "coverage": live["coverage"],
                            "nominal_coverage": live["nominal_coverage"], "flag": live["coverage_flag"],
                            "from_ms": live["from_ms"], "to_ms": live["to_ms"]})
    return {"margin": sb.COVERAGE_MARGIN, "min_n": sb.MIN_N, "window": sb.WINDOW, "checked": len(pairs),
            "flagged": flagged}
