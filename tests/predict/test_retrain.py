"""Retrain: a candidate is promoted only when it is non-inferior to the serving model on the same bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from predict.registry import Registry
from predict.retrain import non_inferiority, retrain
from tests.predict.conftest import TINY, Trained, register
from tests.predict.synthetic import ar1_returns, ar1_series, random_walk_series, series_from_returns

QUIET = dict(source="synthetic", data_source="synthetic", holdout_fraction=0.25, log=lambda _: None)


def test_non_inferiority_decides_on_the_shared_bars() -> None:
    rng = np.random.default_rng(4)
    times = np.arange(600)
    truth_err = rng.normal(0, 1, 600)
    assert non_inferiority(0.8 * truth_err, truth_err, times).promote  # clearly better
    assert non_inferiority(truth_err, truth_err, times).promote  # as good: within the 1 % margin
    worse = non_inferiority(1.3 * truth_err, truth_err, times)
    assert not worse.promote and "keeps serving" in worse.reason and worse.p is not None and worse.p > 0.5
    noisy = non_inferiority(truth_err + rng.normal(0, 1, 600), truth_err, times)  # twice the variance
    assert not noisy.promote


def test_retrain_promotes_a_better_model_and_keeps_a_worse_one(trained: Trained, tmp_path: Path) -> None:
    # serving: a model that learnt nothing (trained on a random walk); the candidate learns a real AR(1)
    registry = Registry(tmp_path / "models")
    rw = [random_walk_series("AAA", seed=31), random_walk_series("BBB", seed=32)]
    first, decision = retrain(rw, registry, config=TINY, **QUIET)
    assert decision.promote and first["status"] == "promoted" and "first model" in decision.reason
    better, decision = retrain([ar1_series("AAA", seed=41), ar1_series("BBB", seed=42)], registry, config=TINY, **QUIET)
    assert decision.promote and better["status"] == "promoted", decision
    assert decision.mse_candidate < 0.9 * decision.mse_current and decision.n > 100
    assert registry.promoted_version() == better["version"]

    # serving: the session's AR(1) model; the candidate trains on bars with no structure, and is held to
    # recent bars that have it (the regime it missed): it must not replace the model that serves
    registry = Registry(tmp_path / "models2")
    serving = register(trained, registry.root, bar_seconds=60)
    shifted = [series_from_returns(sym, np.concatenate([np.random.default_rng(seed).normal(0, 0.002, 1150),
                                                         ar1_returns(450, 0.6, 0.002, seed + 1)]), seed=seed)
               for sym, seed in (("AAA", 51), ("BBB", 52))]
    worse, decision = retrain(shifted, registry, config=TINY, **QUIET)
    assert not decision.promote and worse["status"] == "not_promoted", decision
    assert worse["status_reason"].startswith("retrain: not shown non-inferior")
    assert registry.promoted_version() == serving["version"]
