"""The live scorer, pure: served forecasts held against their bars, and figures that do not flatter."""

from __future__ import annotations

import math

import numpy as np

from predict import scoreboard as sb

T0 = 1_767_225_600_000  # 2026-01-01


def _serve(r: np.ndarray, r_hat: np.ndarray, half_width: float, level: float = 0.8) -> list[sb.Score]:
    """Score one-bar forecasts ``r_hat[t]`` of ``r[t]`` made at bar t - 1 of a price path built from ``r``."""
    close = 100 * np.exp(np.concatenate([[0.0], np.cumsum(r)]))
    out = []
    for t in range(1, len(close)):
        base, pred = float(close[t - 1]), float(close[t - 1] * math.exp(r_hat[t - 1]))
        out.append(sb.score_prediction(
            prediction_id=f"p{t}", symbol="AR", bar_seconds=60, model_version="m1", base_start_ms=T0 + (t - 1) * 60_000,
            horizon_bars=1, base_close=base, predicted_close=pred, lower=pred * math.exp(-half_width),
            upper=pred * math.exp(half_width), interval_level=level, actual_close=float(close[t]),
            last_change_pct=None if t < 2 else (close[t - 1] / close[t - 2] - 1) * 100))
    return out


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eps = rng.normal(0, 0.01, n)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + eps[t]
    return r


def test_one_score() -> None:
    s = sb.score_prediction(prediction_id="p", symbol="X", bar_seconds=60, model_version="m", base_start_ms=T0,
                            horizon_bars=2, base_close=100.0, predicted_close=101.0, lower=99.0, upper=102.0,
                            interval_level=0.8, actual_close=103.0, last_change_pct=-0.5)
    assert s.target_start_ms == T0 + 120_000
    assert s.error == -2.0 and not s.covered
    assert math.isclose(s.error_return, math.log(101 / 103)) and math.isclose(s.persistence_error_return, -math.log(1.03))
    assert s.direction_hit is True and s.up_hit is True and s.last_move_hit is False
    flat = sb.score_prediction(prediction_id="p", symbol="X", bar_seconds=60, model_version="m", base_start_ms=T0,
                               horizon_bars=1, base_close=100.0, predicted_close=100.0, lower=99.0, upper=101.0,
                               interval_level=0.8, actual_close=100.5, last_change_pct=None)
    assert flat.covered and flat.direction_hit is None and flat.up_hit is None and flat.last_move_hit is None


def test_on_an_ar_series_the_live_scoreboard_reports_significant_positive_skill() -> None:
    r = _ar1(600, 0.5, 3)
    scores = _serve(r[1:], 0.5 * r[:-1], 0.0128)  # knows phi; 1.28 sigma: an honest 80 % band
    agg = sb.aggregate(scores)
    assert agg["n"] == 599 and 0.15 < agg["skill"] < 0.35 and agg["dm_p"] < 1e-6
    assert agg["verdict"] == "better"
    assert abs(agg["coverage"] - 0.8) < 0.05 and agg["nominal_coverage"] == 0.8
    d = agg["direction"]
    assert d["accuracy"] > 0.6 and d["accuracy"] > d["always_up"] and d["last_move_n"] == d["n"] == 598
    assert d["last_move"] > 0.55  # positive autocorrelation: following the last move is a real baseline here


def test_on_a_random_walk_it_does_not_flatter() -> None:
    flattered, skills = 0, []
    for seed in range(20):
        r = _ar1(1200, 0.0, 50 + seed)
        phi = float(r[1:600] @ r[:599] / (r[:599] @ r[:599]))  # what a model fitted on the past finds: noise
        agg = sb.aggregate(_serve(r[601:], phi * r[600:-1], 0.0128))
        assert abs(agg["skill"]) < 0.04
        skills.append(agg["skill"])
        flattered += agg["verdict"] == "better"
        if agg["dm_p"] >= 0.05:
            assert agg["verdict"] == "no_difference"
    assert flattered <= 1 and abs(float(np.mean(skills))) < 0.01


def test_a_too_narrow_interval_shows_coverage_below_nominal() -> None:
    r = _ar1(400, 0.0, 9)
    agg = sb.aggregate(_serve(r[1:], np.zeros(399), 0.003))  # 0.3 sigma: covers ~24 %, claims 80 %
    assert agg["nominal_coverage"] == 0.8 and agg["coverage"] < 0.35 and agg["coverage_flag"] == "too_narrow"
    assert sb.aggregate(_serve(r[1:], np.zeros(399), 0.05))["coverage_flag"] == "too_wide"  # 5 sigma
    assert sb.aggregate(_serve(r[1:], np.zeros(399), 0.0128))["coverage_flag"] is None


def test_few_scores_claim_nothing() -> None:
    r = _ar1(60, 0.9, 1)
    agg = sb.aggregate(_serve(r[1:], 0.9 * r[:-1], 0.02))
    assert agg["n"] == 59 and agg["verdict"] == "too_few"
    empty = sb.aggregate([])
    assert empty["n"] == 0 and empty["skill"] is None and empty["dm_p"] is None and empty["verdict"] == "too_few"
    # rows read back as dicts aggregate the same as Score objects
    scores = _serve(r[1:], 0.9 * r[:-1], 0.02)
    assert sb.aggregate([s.row() for s in scores]) == sb.aggregate(scores)
