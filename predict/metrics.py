"""Forecast scores and the baselines the model must beat. Pure numpy.

Every method forecasts the next bar's log return with an interval. Scores
are computed on held-out samples only:

- RMSE / MAE of the return and of the price (``base_close * exp(r_hat)``), MAPE;
- directional accuracy (bars where both the forecast and the actual move are
  non-zero) with a 95 % Wilson interval, beside the two trivial baselines on the
  same bars: "always up" and "always the last move" (on daily index data
  "always up" alone scores 52-55 %);
- interval coverage against the nominal level;
- skill against persistence, ``1 - MSE / MSE_persistence`` on returns (the
  headline) and on prices, with a Diebold-Mariano test of equal squared error.

The DM test uses a Newey-West (Bartlett kernel) long-run variance of the loss
differential with the lag ``floor(4 (n / 100) ** (2 / 9))`` (Newey & West
1994's plug-in rule; 4 at n = 100, 5 at n = 1000), not the iid variance:
one-step differentials are uncorrelated only if the forecasts are optimal,
and volatility clustering makes squared errors autocorrelated, so the iid
variance is too small and the p-value too flattering. The statistic gets the
Harvey-Leybourne-Newbold small-sample factor and is read against Student t
with n - 1 degrees of freedom. Pooled over symbols, the per-date differential
is averaged across symbols first (symbols move together on a date, so they
are not independent samples), then that one series is tested.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from predict.features import FEATURES

if TYPE_CHECKING:  # the web app reads the DM test without pandas
    from predict.dataset import Samples

QUANTILES = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class Forecast:
    """One method's forecasts for a set of samples: log-return point and interval."""

    method: str
    r_hat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def subset(self, mask: np.ndarray) -> "Forecast":
        return Forecast(self.method, self.r_hat[mask], self.lower[mask], self.upper[mask])

    @staticmethod
    def concat(parts: list["Forecast"]) -> "Forecast":
        return Forecast(parts[0].method, *(np.concatenate([getattr(p, a) for p in parts])
                                           for a in ("r_hat", "lower", "upper")))


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial proportion (``(nan, nan)`` for n = 0)."""
    if n == 0:
        return (math.nan, math.nan)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def score(samples: Samples, fc: Forecast, level: float) -> dict[str, Any]:
    """Every figure for one method on ``samples`` (skill is added by :func:`add_skill`)."""
    actual = samples.actual_return
    price_hat = samples.base_close * np.exp(fc.r_hat)
    err_p = price_hat - samples.next_close
    err_r = fc.r_hat - actual
    moved = (actual != 0) & (fc.r_hat != 0)
    hits = int((np.sign(actual[moved]) == np.sign(fc.r_hat[moved])).sum())
    n_dir = int(moved.sum())
    lo, hi = wilson_interval(hits, n_dir)
    up, last = direction_baselines(actual[moved], last_move(samples)[moved])
    covered = (actual >= fc.lower) & (actual <= fc.upper)
    return {
        "n": int(len(actual)),
        "mse_return": float(np.mean(err_r ** 2)),
        "rmse_return": float(np.sqrt(np.mean(err_r ** 2))),
        "mae_return": float(np.mean(np.abs(err_r))),
        "mse_price": float(np.mean(err_p ** 2)),
        "rmse_price": float(np.sqrt(np.mean(err_p ** 2))),
        "mae_price": float(np.mean(np.abs(err_p))),
        "mape_pct": float(np.mean(np.abs(err_p) / samples.next_close) * 100),
        "direction_n": n_dir,
        "direction_accuracy": hits / n_dir if n_dir else None,
        "direction_ci95": [lo, hi] if n_dir else None,
        "direction_always_up": up,
        "direction_last_move": last,
        "coverage": float(covered.mean()),
        "nominal_coverage": level,
        "mean_interval_width_return": float(np.mean(fc.upper - fc.lower)),
    }


def add_skill(rows: dict[str, dict[str, Any]], reference: str = "persistence") -> None:
    """Set ``skill`` (returns, the headline) and ``skill_price`` on every row, against ``reference``."""
    ref = rows[reference]
    for row in rows.values():
        row["skill"] = 1 - row["mse_return"] / ref["mse_return"] if ref["mse_return"] > 0 else 0.0
        row["skill_price"] = 1 - row["mse_price"] / ref["mse_price"] if ref["mse_price"] > 0 else 0.0


def last_move(samples: Samples) -> np.ndarray:
    """The base bar's own log return's sign source (its volatility-scaled return, same sign)."""
    if samples.x.ndim != 3 or samples.x.shape[-1] != len(FEATURES) or not len(samples):
        return np.zeros(len(samples))
    moves: np.ndarray = np.nan_to_num(samples.x[:, -1, FEATURES.index("ret_z")])
    return moves


def direction_baselines(actual: np.ndarray, last: np.ndarray) -> tuple[float | None, float | None]:
    """Hit rates of "always up" and "always the last move" on the bars given (``None`` if none).

    A last move of zero predicts no direction: it counts as a miss, as a flat
    forecast would have.
    """
    n = len(actual)
    if n == 0:
        return (None, None)
    return (float(np.mean(actual > 0)), float(np.mean(np.sign(last) == np.sign(actual))))


def newey_west_lag(n: int) -> int:
    """The Bartlett-kernel truncation lag: ``floor(4 (n / 100) ** (2 / 9))`` (Newey & West 1994)."""
    return int(math.floor(4 * (max(n, 1) / 100) ** (2 / 9)))


def long_run_variance(d: np.ndarray, lag: int) -> float:
    """Newey-West estimate of the long-run variance of ``d`` (Bartlett weights ``1 - k / (lag + 1)``).

    Never negative (the Bartlett kernel's point). ``lag = 0`` is the iid variance (ddof 0).
    """
    n = len(d)
    e = d - d.mean()
    lrv = float(e @ e) / n
    for k in range(1, min(lag, n - 1) + 1):
        lrv += 2 * (1 - k / (lag + 1)) * float(e[k:] @ e[:-k]) / n
    return max(lrv, 0.0)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta ``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of ``t`` under Student t with ``df`` degrees of freedom."""
    if not math.isfinite(t):
        return 0.0
    return min(1.0, max(0.0, _betainc(df / 2, 0.5, df / (df + t * t))))


@dataclass(frozen=True)
class DMResult:
    """A Diebold-Mariano test: statistic (negative: ``a`` better), two-sided p, n and the HAC lag used."""

    stat: float
    p: float
    n: int
    lag: int
    mean_d: float


def dm_test(d: np.ndarray, *, lag: int | None = None, horizon: int = 1, hln: bool = True) -> DMResult:
    """DM test that the mean loss differential ``d`` (model minus reference, time-ordered) is zero.

    ``lag`` defaults to :func:`newey_west_lag` (and is at least ``horizon - 1``, the
    autocorrelation an h-step forecast has by construction).
    """
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = len(d)
    lag = max(newey_west_lag(n) if lag is None else lag, horizon - 1)
    if n < 3:
        return DMResult(0.0, 1.0, n, lag, float(d.mean()) if n else 0.0)
    lrv = long_run_variance(d, lag)
    mean = float(d.mean())
    if lrv <= 1e-300 * max(1.0, mean * mean):
        return DMResult(0.0, 1.0, n, lag, mean) if mean == 0 else DMResult(math.copysign(math.inf, mean), 0.0, n, lag, mean)
    stat = mean / math.sqrt(lrv / n)
    if hln:  # Harvey, Leybourne & Newbold (1997)
        h = horizon
        stat *= math.sqrt(max(n + 1 - 2 * h + h * (h - 1) / n, 1e-12) / n)
    return DMResult(stat, t_two_sided_p(stat, n - 1), n, lag, mean)


def diebold_mariano(err_a: np.ndarray, err_b: np.ndarray, *, lag: int | None = None) -> tuple[float, float]:
    """DM test of equal squared error of two time-ordered error series: (statistic, two-sided p-value).

    Negative statistic: ``a`` has the smaller errors. HAC (Newey-West) variance, see the module doc.
    """
    r = dm_test(np.asarray(err_a) ** 2 - np.asarray(err_b) ** 2, lag=lag)
    return (r.stat, r.p)


def pooled_differential(d: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loss differential averaged over symbols per date: (sorted dates, one mean per date).

    Symbols forecast for the same bar share its market move, so their
    differentials are dependent; one average per date is the series to test.
    """
    dates, inverse = np.unique(np.asarray(times), return_inverse=True)
    sums = np.bincount(inverse, weights=np.asarray(d, dtype=np.float64), minlength=len(dates))
    counts = np.bincount(inverse, minlength=len(dates))
    return dates, sums / counts


def significant(skill: float | None, p: float | None, n: int | None = None, *, alpha: float = 0.05,
                min_n: int = 0) -> bool:
    """Skill positive at ``p < alpha`` on at least ``min_n`` samples: the only case "better" may be said."""
    return (skill is not None and p is not None and skill > 0 and p < alpha
            and (n is None or n >= min_n))


# --- baselines -----------------------------------------------------------------------

def _residual_band(train: Samples, r_hat_train: np.ndarray, level: float) -> tuple[float, float]:
    """Quantiles of the volatility-normalised training residuals: a band that scales with sigma."""
    z = (train.actual_return - r_hat_train) / train.sigma
    a = (1 - level) / 2
    return float(np.quantile(z, a)), float(np.quantile(z, 1 - a))


def _with_band(method: str, r_hat: np.ndarray, sigma: np.ndarray, band: tuple[float, float]) -> Forecast:
    return Forecast(method, r_hat, r_hat + band[0] * sigma, r_hat + band[1] * sigma)


def persistence(train: Samples, test: Samples, level: float) -> Forecast:
    """Tomorrow's close = today's (a zero return)."""
    band = _residual_band(train, np.zeros(len(train)), level)
    return _with_band("persistence", np.zeros(len(test)), test.sigma, band)


def drift(train: Samples, test: Samples, level: float) -> Forecast:
    """The symbol's mean training log return, every bar."""
    r_hat = np.zeros(len(test))
    r_hat_train = np.zeros(len(train))
    for sym in np.unique(test.symbol):
        mu = float(train.actual_return[train.symbol == sym].mean()) if (train.symbol == sym).any() else 0.0
        r_hat[test.symbol == sym] = mu
        r_hat_train[train.symbol == sym] = mu
    return _with_band("drift", r_hat, test.sigma, _residual_band(train, r_hat_train, level))


@dataclass(frozen=True)
class LinearAR:
    """Least squares of the normalised target on the flattened scaled window (the model's inputs)."""

    coef: np.ndarray

    @staticmethod
    def design(x_scaled: np.ndarray) -> np.ndarray:
        flat = x_scaled.reshape(len(x_scaled), -1)
        return np.hstack([np.ones((len(flat), 1)), flat])

    @classmethod
    def fit(cls, x_scaled: np.ndarray, y: np.ndarray, ridge: float = 1.0) -> "LinearAR":
        a = cls.design(x_scaled)
        reg = ridge * np.eye(a.shape[1])
        reg[0, 0] = 0.0
        coef = np.linalg.solve(a.T @ a + reg, a.T @ y)
        return cls(coef)

    def predict_z(self, x_scaled: np.ndarray) -> np.ndarray:
        z: np.ndarray = self.design(x_scaled) @ self.coef
        return z


def linear_ar(train: Samples, test: Samples, level: float, transform: Any) -> Forecast:
    """The linear baseline on the same scaled features (``transform`` = the model's scaler)."""
    ar = LinearAR.fit(transform(train.x), train.y)
    band = _residual_band(train, ar.predict_z(transform(train.x)) * train.sigma, level)
    return _with_band("linear_ar", ar.predict_z(transform(test.x)) * test.sigma, test.sigma, band)
