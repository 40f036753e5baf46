"""The model finds real structure, and the evaluation does not flatter it where there is none."""

from __future__ import annotations

import math

import numpy as np

from predict.dataset import build_samples
from predict.evaluate import ALL, MODEL, walk_forward
from predict.metrics import Forecast, add_skill, diebold_mariano, score, wilson_interval
from tests.predict.conftest import TINY, Trained
from tests.predict.synthetic import random_walk_series


def test_on_an_ar1_series_the_lstm_clearly_beats_persistence(trained: Trained) -> None:
    table = trained.evaluation.table()
    lstm = table[ALL][MODEL]
    # phi = 0.6: the best possible skill is phi**2 = 0.36
    assert lstm["skill"] > 0.25, lstm
    assert lstm["skill"] < 0.45  # not more than the process allows: no leak of the answer
    assert lstm["direction_ci95"][0] > 0.6
    assert lstm["dm_stat_vs_persistence"] < 0 and lstm["dm_p_vs_persistence"] < 1e-6
    assert abs(lstm["coverage"] - 0.8) < 0.06
    assert lstm["rmse_price"] < table[ALL]["persistence"]["rmse_price"]
    # the linear baseline sees the same (linear) structure
    assert table[ALL]["linear_ar"]["skill"] > 0.25
    assert abs(table[ALL]["drift"]["skill"]) < 0.02


def test_on_a_random_walk_the_walk_forward_skill_is_near_zero() -> None:
    series = [random_walk_series("RW1", seed=21), random_walk_series("RW2", seed=22)]
    ev = walk_forward(series, TINY, folds=2, test_fraction=0.3, log=lambda _: None)
    table = ev.table()
    for sym in ("RW1", "RW2", ALL):
        assert abs(table[sym][MODEL]["skill"]) < 0.05, (sym, table[sym][MODEL]["skill"])
    lstm = table[ALL][MODEL]
    lo, hi = lstm["direction_ci95"]
    assert lo < 0.5 < hi + 0.02  # coin-flip direction
    assert abs(lstm["coverage"] - 0.8) < 0.06
    assert abs(table[ALL]["persistence"]["skill"]) == 0.0
    # every fold trained strictly before its test stretch
    for f in ev.folds:
        assert f["train_to_ms"] < f["val_from_ms"] <= f["val_to_ms"] < f["test_from_ms"]


def test_wilson_interval_matches_the_textbook() -> None:
    lo, hi = wilson_interval(81, 263)
    assert math.isclose(lo, 0.2553, abs_tol=1e-3) and math.isclose(hi, 0.3662, abs_tol=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and math.isclose(wilson_interval(10, 10)[1], 1.0)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_scores_of_a_perfect_forecast_and_of_persistence() -> None:
    s = build_samples([random_walk_series("X", n=300)], 10)
    r = s.actual_return
    perfect = Forecast("perfect", r, r - 1e-9, r + 1e-9)
    zero = Forecast("persistence", np.zeros(len(s)), r * 0 - 1, r * 0 + 1)
    rows = {"perfect": score(s, perfect, 0.8), "persistence": score(s, zero, 0.8)}
    add_skill(rows)
    assert rows["perfect"]["rmse_price"] < 1e-9 and rows["perfect"]["mape_pct"] < 1e-9
    assert rows["perfect"]["skill"] == 1.0 and rows["perfect"]["direction_accuracy"] == 1.0
    assert rows["persistence"]["skill"] == 0.0 and rows["persistence"]["direction_n"] == 0
    assert rows["persistence"]["coverage"] == 1.0
    assert math.isclose(rows["persistence"]["mae_price"], float(np.mean(np.abs(s.next_close - s.base_close))))


def test_diebold_mariano() -> None:
    rng = np.random.default_rng(0)
    e = rng.normal(0, 1, 2000)
    assert diebold_mariano(e, e) == (0.0, 1.0)
    stat, p = diebold_mariano(0.5 * e, e)
    assert stat < 0 and p < 1e-10
    stat, p = diebold_mariano(rng.normal(0, 1, 2000), rng.normal(0, 1, 2000))
    assert p > 0.01
