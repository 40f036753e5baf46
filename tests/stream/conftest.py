"""One SparkSession (local[2]) for every stream test, and a per-test job configuration."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest
from pyspark.sql import SparkSession

from events.settings import Settings
from stream.config import StreamSettings
from stream.job import build_session

BAR_SECONDS = 1
LATENESS_MS = 500


@pytest.fixture(scope="session")
def spark(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    cfg = StreamSettings(base=base_settings, checkpoint_dir=tmp_path_factory.mktemp("ckpt"), master="local[2]")
    session = build_session(cfg)
    yield session
    session.stop()


@pytest.fixture
def stream_cfg(kafka_settings: Settings, tmp_path: Path) -> StreamSettings:
    """Job settings on this test's topics: 1 s bars, 500 ms lateness, fast trigger, own checkpoint."""
    return StreamSettings(
        base=replace(kafka_settings, bar_seconds=BAR_SECONDS),
        checkpoint_dir=tmp_path / "checkpoint",
        lateness_ms=LATENESS_MS,
        master="local[2]",
        trigger_ms=200,
        shards=4,
        query_name=f"stream-test-{uuid.uuid4().hex[:8]}",
    )
