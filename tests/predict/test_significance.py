"""The significance tests do not flatter: HAC variance, pooled rows by date, direction baselines."""

from __future__ import annotations

import math

import numpy as np

from predict.metrics import (direction_baselines, dm_test, long_run_variance, newey_west_lag, pooled_differential,
                             significant, t_two_sided_p)
from predict.report import verdict


def _ar1(n: int, phi: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    eps = rng.normal(0, 0.01, n)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = phi * r[t - 1] + eps[t]
    return r


def _skill_and_test(r: np.ndarray, r_hat: np.ndarray) -> tuple[float, float]:
    err, pers = r_hat - r, -r
    skill = 1 - float(np.mean(err ** 2) / np.mean(pers ** 2))
    return skill, dm_test(err ** 2 - pers ** 2).p


def test_student_t_p_values_match_the_tables() -> None:
    assert math.isclose(t_two_sided_p(2.228, 10), 0.05, abs_tol=5e-4)
    assert math.isclose(t_two_sided_p(1.96, 1e6), 0.05, abs_tol=5e-4)
    assert math.isclose(t_two_sided_p(-2.576, 1e6), 0.01, abs_tol=2e-4)
    assert t_two_sided_p(0.0, 5) == 1.0 and t_two_sided_p(math.inf, 5) == 0.0


def test_the_lag_rule_is_the_stated_one() -> None:
    assert [newey_west_lag(n) for n in (10, 100, 1000, 10_000)] == [2, 4, 6, 11]
    assert dm_test(np.arange(50.0), horizon=10).lag == 9  # at least h - 1 for h-step forecasts


def test_a_model_that_knows_the_ar1_coefficient_has_significant_positive_skill() -> None:
    for seed in range(5):
        r = _ar1(1000, 0.5, seed)
        skill, p = _skill_and_test(r[1:], 0.5 * r[:-1])
        assert 0.15 < skill < 0.35, skill  # phi**2 = 0.25 is the best possible
        assert p < 1e-6 and significant(skill, p, 999, min_n=100)
        assert verdict(skill, p) == "beats persistence"


def test_on_a_random_walk_the_test_does_not_flatter() -> None:
    """An AR(1) fitted on the first half of a random walk, scored on the second: skill ~ 0, p > 0.05."""
    rejections, skills = 0, []
    seeds = range(40)
    for seed in seeds:
        r = _ar1(2000, 0.0, 100 + seed)
        train, test = r[:1000], r[1000:]
        phi = float(train[1:] @ train[:-1] / (train[:-1] @ train[:-1]))
        skill, p = _skill_and_test(test[1:], phi * test[:-1])
        skills.append(skill)
        rejections += p < 0.05 and skill > 0
        if p >= 0.05:
            assert "does not differ significantly" in verdict(skill, p)
    assert max(abs(s) for s in skills) < 0.02
    assert rejections <= 2, rejections  # a flattering test claims skill far more often than 5 % of the time


def test_hac_variance_is_larger_than_iid_on_an_autocorrelated_differential() -> None:
    rho, n = 0.5, 500  # true long-run / iid variance: (1 + rho) / (1 - rho) = 3
    iid_rejects = hac_rejects = 0
    for seed in range(100):
        d = _ar1(n, rho, 1000 + seed)  # mean zero: the null is true
        assert long_run_variance(d, newey_west_lag(n)) > 1.5 * long_run_variance(d, 0)
        iid_rejects += dm_test(d, lag=0).p < 0.05
        hac_rejects += dm_test(d).p < 0.05
    assert iid_rejects > 20  # the iid variance rejects a true null far more often than 5 %
    assert hac_rejects < iid_rejects / 2 and hac_rejects <= 12


def test_pooled_rows_average_each_date_before_testing() -> None:
    """Ten symbols that share the date's move: testing all rows as independent rejects a true null often."""
    naive = pooled = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        dates = np.repeat(np.arange(300), 10)
        d = np.repeat(rng.normal(0, 1, 300), 10) + rng.normal(0, 0.3, 3000)
        naive += dm_test(d, lag=0).p < 0.05
        when, per_date = pooled_differential(d, dates)
        assert len(when) == 300 and math.isclose(per_date[7], d[70:80].mean())
        r = dm_test(per_date)
        assert r.n == 300
        pooled += r.p < 0.05
    assert naive > 40 and pooled < 15


def test_direction_baselines() -> None:
    actual = np.array([0.01, 0.02, -0.01, 0.03, 0.01])
    last = np.array([0.0, 0.01, 0.02, -0.01, 0.03])
    up, follow = direction_baselines(actual, last)
    assert up == 0.8 and follow == 0.4  # a zero last move is a miss
    assert direction_baselines(np.array([]), np.array([])) == (None, None)


def test_verdict_uses_the_p_value() -> None:
    assert verdict(0.2, 0.01) == "beats persistence"
    assert verdict(-0.2, 0.01) == "is worse than persistence"
    assert verdict(0.2, 0.30).startswith("does not differ significantly")
    assert "untested" in verdict(0.2)
