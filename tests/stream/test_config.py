"""Stream settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.settings import SettingsError
from stream.config import load_stream_settings


def test_defaults_and_topic_names() -> None:
    cfg = load_stream_settings({"TICKERBELL_VAR": "/tmp/tb-var", "KAFKA_TOPIC_PREFIX": "p."})
    assert cfg.bar_seconds == 60 and cfg.lateness_ms == 2000 and cfg.trigger_ms == 500
    assert cfg.master == "local[*]" and cfg.shuffle_partitions == 2 and cfg.starting_offsets == "earliest"
    assert cfg.checkpoint_dir == Path("/tmp/tb-var/spark/stream")
    assert (cfg.ticks_topic, cfg.metrics_topic, cfg.dlq_topic) == ("p.ticks", "p.metrics", "p.ticks.dlq")
    assert any("spark-sql-kafka" in j for j in cfg.jars())


def test_overrides() -> None:
    cfg = load_stream_settings({
        "BAR_SECONDS": "5", "STREAM_LATENESS_MS": "0", "SPARK_MASTER": "spark://h:7077",
        "STREAM_CHECKPOINT": "/data/ckpt", "STREAM_TRIGGER_MS": "1000", "STREAM_SHARDS": "32",
        "STREAM_STARTING_OFFSETS": "latest", "STREAM_MAX_OFFSETS_PER_TRIGGER": "5000",
    })
    assert (cfg.bar_seconds, cfg.lateness_ms, cfg.master, cfg.checkpoint_dir, cfg.trigger_ms, cfg.shards,
            cfg.starting_offsets, cfg.max_offsets_per_trigger) == (
        5, 0, "spark://h:7077", Path("/data/ckpt"), 1000, 32, "latest", 5000)


@pytest.mark.parametrize(("name", "value"), [
    ("STREAM_LATENESS_MS", "-1"), ("STREAM_SHARDS", "0"), ("STREAM_TRIGGER_MS", "soon"),
    ("STREAM_STARTING_OFFSETS", "middle"), ("BAR_SECONDS", "0"),
])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_stream_settings({name: value})


def test_missing_jars_fail_at_start(tmp_path: Path) -> None:
    cfg = load_stream_settings({"SPARK_JARS_DIR": str(tmp_path)})
    with pytest.raises(SettingsError, match="jars"):
        cfg.jars()
