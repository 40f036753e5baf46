"""The Spark Structured Streaming job: topics ``ticks`` + ``history`` -> bars + indicators -> ``metrics``.

Plan (one query, one stateful operator):

1. One Kafka source subscribed to ``ticks`` and ``history`` together, so a
   micro-batch's end offsets are taken for both at once: a backfill that ingest
   flushed before a symbol's first live tick is in the same micro-batch as that
   tick or an earlier one. Each value is parsed with ``from_json`` by its
   ``topic`` and validated in SQL like :class:`events.contract.Tick` (type, id,
   ts range, symbol pattern, price > 0, size >= 0, finite, source, seq) or
   :class:`events.contract.HistoryBar` (the same, OHLCV, low <= open/close <=
   high, ``ts`` = bar end, start aligned to the bar length). A failing row gets
   a ``reason`` and shard -1; every row gets a ``kind`` (``tick``/``history``).
2. ``withWatermark`` on the event time of ticks only (history rows have none:
   an old backfill must not hold the watermark back, nor can it move it), then
   the event-time column is projected away so that Spark does not silently drop
   late rows before the stateful operator: the processor sees them and
   dead-letters them with reason ``late`` instead (the global watermark and the
   event-time timers still work; checked on pyspark 4.2.0).
3. ``groupBy(shard).transformWithStateInPandas(BarProcessor)`` in EventTime
   mode on the RocksDB state store: bars and indicators (stream.bars,
   stream.indicators). History bars are folded by the same indicator step as a
   live bar closing and come out as ``Bar(history=True)`` with the id a live
   bar of that start would have; a history bar already covered (a re-sent
   backfill, or at/after a live bar) is dropped and counted.
4. Kafka sink, topic per row: Bar events to ``metrics`` (key = symbol),
   bad and late inputs (raw bytes, ``dlq.*`` headers) to the source topic's
   ``.dlq`` (``ticks.dlq``, ``history.dlq``; a history bar of another bar
   length has reason ``bar_seconds``).

Delivery: Spark's checkpoint holds offsets and state together; the Kafka sink
is at-least-once, so a crash can re-emit the bars of the batch in flight,
with identical content and ids (the batch is replayed from the same offsets
with the same watermark and state).
"""

from __future__ import annotations

import logging
import os
import sys
from functools import reduce
from typing import Any, MutableMapping
from urllib.parse import urlsplit

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.types import ArrayType, StructField, StructType

from events.settings import ROOT, Settings
from stream.config import StreamSettings
from stream.packing import SHARD_COLUMN, pack_by_shard
from stream.processor import INVALID_SHARD, OUTPUT_SCHEMA, BarProcessor

log = logging.getLogger(__name__)

__all__ = [
    "build_session", "build_stream", "history_reason", "kafka_options", "on_this_machine", "prepare_python_env",
    "start_query", "tick_reason",
]

TICK_SCHEMA = (
    "type string, v int, id string, ts long, symbol string, price double, size double, "
    "source string, seq long"
)
TICK_FIELDS = ("type", "v", "id", "ts", "symbol", "price", "size", "source", "seq")
HISTORY_SCHEMA = (
    "type string, v int, id string, ts long, symbol string, start_ms long, bar_seconds long, "
    "open double, high double, low double, close double, volume double, source string"
)
HISTORY_FIELDS = ("type", "v", "id", "ts", "symbol", "start_ms", "bar_seconds", "open", "high", "low", "close",
                  "volume", "source")
SYMBOL_PATTERN = r"^[A-Z0-9^][A-Z0-9.\-=^]{0,15}$"
MIN_TS_MS, MAX_TS_MS = 946_684_800_000, 4_102_444_800_000
HEADERS_TYPE = "array<struct<key:string,value:binary>>"


def prepare_python_env(env: MutableMapping[str, str] | None = None) -> None:
    """Make Spark's Python workers use this interpreter and find this project.

    Must run before the first SparkSession of the process (the JVM copies the
    environment when it starts).
    """
    if env is None:
        env = os.environ
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])


def on_this_machine(master: str) -> bool:
    """Whether the master runs everything here: local mode, or a standalone master on loopback."""
    return master.startswith("local") or urlsplit(master).hostname in {"127.0.0.1", "localhost", "::1"}


def build_session(cfg: StreamSettings) -> SparkSession:
    """A SparkSession sized for a small box, with the Kafka connector jars."""
    prepare_python_env()
    builder = (
        SparkSession.builder.master(cfg.master).appName(cfg.query_name)
        .config("spark.jars", ",".join(cfg.jars()))
        # a cluster's executors do not inherit the driver's environment: they import this
        # project from the same path (a shared checkout or image), like local mode's do
        .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.sql.streaming.stateStore.providerClass",
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider")
        # write a changelog per batch instead of uploading a RocksDB snapshot every batch
        .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # no extra state-store lookup before each put just to count rows (numRowsTotal, unused)
        .config("spark.sql.streaming.stateStore.rocksdb.trackTotalNumberOfRows", "false")
    )
    if on_this_machine(cfg.master):
        # one machine: the driver's sockets on loopback only (else Spark picks eth0's address
        # when the hostname resolves to 127.0.0.1); SPARK_LOCAL_IP before the JVM starts
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = builder.config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def kafka_options(settings: Settings) -> dict[str, str]:
    """Spark's ``kafka.*`` client options from the shared settings (bootstrap, security)."""
    opts = {
        "kafka.bootstrap.servers": settings.kafka_bootstrap_servers,
        "kafka.security.protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_username:
        module = ("org.apache.kafka.common.security.scram.ScramLoginModule"
                  if settings.kafka_sasl_mechanism.startswith("SCRAM")
                  else "org.apache.kafka.common.security.plain.PlainLoginModule")
        user = settings.kafka_username.replace('"', '\\"')
        password = settings.kafka_password.get().replace('"', '\\"')
        opts["kafka.sasl.mechanism"] = settings.kafka_sasl_mechanism
        opts["kafka.sasl.jaas.config"] = f'{module} required username="{user}" password="{password}";'
    return opts


def _bad_float(c: Column, lo_ok: Column, hi: float) -> Column:
    return c.isNull() | F.isnan(c) | ~lo_ok | (c >= F.lit(hi))


def tick_reason(t: Column, value: Column) -> Column:
    """Why a parsed tick is invalid (a string), or null when it is a valid Tick."""
    bad_float = _bad_float
    return (
        F.when(value.isNull(), F.lit("empty message"))
        .when(t.isNull() | reduce(lambda a, b: a & b, (t[f].isNull() for f in TICK_FIELDS)),
              F.lit("undecodable tick: not a JSON object with tick fields"))
        .when(t["type"].isNull() | (t["type"] != "tick"), F.lit("not a tick: `type` must be \"tick\""))
        .when(t["id"].isNull(), F.lit("invalid tick: `id` missing"))
        .when(t["ts"].isNull() | (t["ts"] < MIN_TS_MS) | (t["ts"] > MAX_TS_MS),
              F.lit("invalid tick: `ts` missing or not epoch ms in 2000..2100"))
        .when(t["symbol"].isNull() | ~t["symbol"].rlike(SYMBOL_PATTERN), F.lit("invalid tick: `symbol`"))
        .when(bad_float(t["price"], t["price"] > 0, 1e12), F.lit("invalid tick: `price` must be > 0 and finite"))
        .when(bad_float(t["size"], t["size"] >= 0, 1e15), F.lit("invalid tick: `size` must be >= 0 and finite"))
        .when(t["source"].isNull() | (F.length(t["source"]) < 1) | (F.length(t["source"]) > 64),
              F.lit("invalid tick: `source`"))
        .when(t["seq"].isNull() | (t["seq"] < 0), F.lit("invalid tick: `seq`"))
    )


def history_reason(h: Column, value: Column) -> Column:
    """Why a parsed history bar is invalid (a string), or null when it is a valid HistoryBar.

    Beyond the contract's decoder: ``ts`` must be the bar's end and ``start_ms`` a multiple
    of the bar length, since the bar's id and its place among live bars come from them.
    """
    bad_price = reduce(lambda a, b: a | b, (_bad_float(h[f], h[f] > 0, 1e12) for f in ("open", "high", "low", "close")))
    return (
        F.when(value.isNull(), F.lit("empty message"))
        .when(h.isNull() | reduce(lambda a, b: a & b, (h[f].isNull() for f in HISTORY_FIELDS)),
              F.lit("undecodable history_bar: not a JSON object with history_bar fields"))
        .when(h["type"].isNull() | (h["type"] != "history_bar"),
              F.lit("not a history bar: `type` must be \"history_bar\""))
        .when(h["id"].isNull(), F.lit("invalid history_bar: `id` missing"))
        .when(h["symbol"].isNull() | ~h["symbol"].rlike(SYMBOL_PATTERN), F.lit("invalid history_bar: `symbol`"))
        .when(h["bar_seconds"].isNull() | (h["bar_seconds"] <= 0) | (h["bar_seconds"] > 31 * 86_400),
              F.lit("invalid history_bar: `bar_seconds` must be 1 .. 2678400 (31 days)"))
        .when(h["start_ms"].isNull() | (h["start_ms"] < MIN_TS_MS) | (h["start_ms"] > MAX_TS_MS),
              F.lit("invalid history_bar: `start_ms` missing or not epoch ms in 2000..2100"))
        .when(F.pmod(h["start_ms"], h["bar_seconds"] * 1000) != 0,
              F.lit("invalid history_bar: `start_ms` must be a multiple of `bar_seconds`"))
        .when(h["ts"].isNull() | (h["ts"] != h["start_ms"] + h["bar_seconds"] * 1000) | (h["ts"] > MAX_TS_MS),
              F.lit("invalid history_bar: `ts` must be the bar's end, start_ms + bar_seconds * 1000"))
        .when(bad_price, F.lit("invalid history_bar: `open`, `high`, `low`, `close` must be > 0 and finite"))
        .when(_bad_float(h["volume"], h["volume"] >= 0, 1e15),
              F.lit("invalid history_bar: `volume` must be >= 0 and finite"))
        .when(h["low"] > h["high"], F.lit("invalid history_bar: `low` must not exceed `high`"))
        .when((h["open"] < h["low"]) | (h["open"] > h["high"]) | (h["close"] < h["low"]) | (h["close"] > h["high"]),
              F.lit("invalid history_bar: `open` and `close` must lie within [`low`, `high`]"))
        .when(h["source"].isNull() | (F.length(h["source"]) < 1) | (F.length(h["source"]) > 64),
              F.lit("invalid history_bar: `source`"))
    )


def build_stream(spark: SparkSession, cfg: StreamSettings) -> DataFrame:
    """The streaming DataFrame of Kafka records to write: topic, key, value, headers."""
    raw = (
        spark.readStream.format("kafka").options(**kafka_options(cfg.base))
        # one source for both: a batch's end offsets are taken together (history before ticks)
        .option("subscribe", f"{cfg.ticks_topic},{cfg.history_topic}")
        .option("startingOffsets", cfg.starting_offsets)
        .option("failOnDataLoss", "false")
        .option("maxOffsetsPerTrigger", str(cfg.max_offsets_per_trigger))
        .load()
    )
    is_tick = F.col("topic") == cfg.ticks_topic
    text = F.col("value").cast("string")
    parsed = raw.select(
        "key", "value", "partition", "offset",
        F.when(is_tick, F.lit("tick")).otherwise(F.lit("history")).alias("kind"),
        F.when(is_tick, F.from_json(text, TICK_SCHEMA)).alias("t"),
        F.when(~is_tick, F.from_json(text, HISTORY_SCHEMA)).alias("h"),
    ).withColumn("reason", F.when(F.col("kind") == "tick", tick_reason(F.col("t"), F.col("value")))
                 .otherwise(history_reason(F.col("h"), F.col("value"))))
    valid = F.col("reason").isNull()
    tick = F.col("kind") == "tick"
    symbol = F.coalesce(F.col("t.symbol"), F.col("h.symbol"))
    rows = parsed.select(
        F.when(valid, F.pmod(F.xxhash64(symbol), F.lit(cfg.shards)))
        .otherwise(F.lit(INVALID_SHARD)).cast("int").alias("shard"),
        F.col("kind"),
        F.when(valid, symbol).alias("symbol"),
        F.coalesce(F.col("t.ts"), F.col("h.ts")).alias("ts_ms"),
        F.col("t.price").alias("price"),
        F.col("t.size").alias("size"),
        F.col("h.start_ms").alias("start_ms"),
        F.col("h.bar_seconds").alias("bar_seconds"),
        F.col("h.open").alias("open"),
        F.col("h.high").alias("high"),
        F.col("h.low").alias("low"),
        F.col("h.close").alias("close"),
        F.col("h.volume").alias("volume"),
        F.col("partition").cast("int").alias("partition"),
        F.col("offset"),
        F.col("key"),
        F.col("value"),
        F.col("reason"),
        # ticks only: history is older than live data and must not hold back or move the watermark
        F.when(valid & tick, F.timestamp_millis(F.col("t.ts"))).alias("event_time"),
    )
    # Watermark on the event time, then drop that column: with it still attached, the
    # stateful operator would discard late rows silently instead of letting us DLQ them.
    watermarked = rows.withWatermark("event_time", f"{cfg.lateness_ms} milliseconds").drop("event_time")
    # One row per shard and input task, columns as lists (stream.packing): the stateful
    # operator's serializer costs ~50 µs per row it is handed, so it is handed few.
    packed_type = StructType([
        StructField(f.name, f.dataType if f.name == SHARD_COLUMN else ArrayType(f.dataType))
        for f in watermarked.schema.fields
    ])
    packed = watermarked.mapInArrow(pack_by_shard, packed_type)
    out = packed.groupBy(SHARD_COLUMN).transformWithStateInPandas(
        statefulProcessor=BarProcessor(cfg.bar_seconds, cfg.lateness_ms),
        outputStructType=OUTPUT_SCHEMA,
        outputMode="Append",
        timeMode="EventTime",
    )
    out = out.observe(
        "stream",
        F.count(F.when(F.col("kind") == "bar", 1)).alias("bars"),
        F.count(F.when((F.col("kind") == "bar") & (F.col("input") == "history"), 1)).alias("history"),
        F.count(F.when(F.col("kind") == "dropped", 1)).alias("history_dropped"),
        F.count(F.when(F.col("reason") == "late", 1)).alias("late"),
        F.count(F.when((F.col("kind") == "dlq") & (F.col("reason") != "late"), 1)).alias("invalid"),
    ).where(F.col("kind") != "dropped")  # counted above; nothing to write
    is_bar = F.col("kind") == "bar"
    from_ticks = F.col("input") == "tick"

    def header(name: str, value: Column) -> Column:
        return F.struct(F.lit(name).alias("key"), value.cast("binary").alias("value"))

    dlq_headers = F.array(
        header("dlq.error", F.col("reason")),
        header("dlq.topic", F.when(from_ticks, F.lit(cfg.ticks_topic)).otherwise(F.lit(cfg.history_topic))),
        header("dlq.partition", F.col("src_partition").cast("string")),
        header("dlq.offset", F.col("src_offset").cast("string")),
        header("dlq.watermark_ms", F.col("watermark_ms").cast("string")),
    )
    return out.select(
        F.when(is_bar, F.lit(cfg.metrics_topic)).when(from_ticks, F.lit(cfg.dlq_topic))
        .otherwise(F.lit(cfg.history_dlq_topic)).alias("topic"),
        F.col("key"),
        F.col("value"),
        F.when(is_bar, F.array().cast(HEADERS_TYPE)).otherwise(dlq_headers).alias("headers"),
    )


def start_query(spark: SparkSession, cfg: StreamSettings) -> StreamingQuery:
    """Start the job; it resumes from ``cfg.checkpoint_dir`` when one exists there."""
    producer: dict[str, Any] = {
        "kafka.acks": "all",
        "kafka.enable.idempotence": "true",
        "kafka.linger.ms": "5",
        "kafka.compression.type": "lz4",
    }
    cfg.checkpoint_dir.parent.mkdir(parents=True, exist_ok=True)
    return (
        build_stream(spark, cfg).writeStream.format("kafka")
        .options(**kafka_options(cfg.base)).options(**producer)
        .option("checkpointLocation", str(cfg.checkpoint_dir))
        .outputMode("append")
        .trigger(processingTime=f"{cfg.trigger_ms} milliseconds")
        .queryName(cfg.query_name)
        .start()
    )
