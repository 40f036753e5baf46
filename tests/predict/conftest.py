"""One tiny model trained per test session (on AR(1) data), shared by every predict test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from predict.model import configure_tensorflow

configure_tensorflow(threads=2)

from predict.data import BarSeries  # noqa: E402
from predict.evaluate import Evaluation, holdout  # noqa: E402
from predict.model import Forecaster, ModelConfig  # noqa: E402
from predict.pipeline import train_and_register  # noqa: E402
from predict.registry import Registry  # noqa: E402
from tests.predict.synthetic import ar1_series  # noqa: E402

TINY = ModelConfig(window=10, units=8, epochs=30, patience=4, batch_size=128, seed=7)


@dataclass
class Trained:
    series: list[BarSeries]
    forecaster: Forecaster
    evaluation: Evaluation
    config: ModelConfig


@pytest.fixture(scope="session")
def ar_series() -> list[BarSeries]:
    return [ar1_series("AAA", seed=11), ar1_series("BBB", seed=12)]


@pytest.fixture(scope="session")
def trained(ar_series: list[BarSeries]) -> Trained:
    forecaster, ev = holdout(ar_series, TINY, holdout_fraction=0.25, log=lambda _: None)
    return Trained(ar_series, forecaster, ev, TINY)


def register(trained: Trained, root: Path, *, skill: float | None = None, promote: bool = True,
             bar_seconds: int | None = None) -> dict:
    """Store the session model as a new version (optionally with a stated skill and bar size)."""
    registry = Registry(root)
    f = trained.forecaster
    meta = {"skill": skill if skill is not None else trained.evaluation.skill(), "config": trained.config.to_dict(),
            "interval_level": trained.config.interval_level, "source": "synthetic AR(1)"}
    if bar_seconds is not None:
        meta["trained_on"] = {"bar_seconds": bar_seconds, "data_source": "synthetic"}
    return registry.register(lambda p: f.model.save(p), {"features": f.scaler.to_dict()}, meta, promote=promote)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "models")


__all__ = ["TINY", "Trained", "register", "train_and_register"]
