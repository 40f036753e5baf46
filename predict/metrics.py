"""Forecast scores and the baselines the model must beat. Pure numpy.

Every method forecasts the next bar's log return with an interval. Scores
are computed on held-out samples only:

- RMSE / MAE of the return and of the price (``base_close * exp(r_hat)``), MAPE;
- directional accuracy (bars where both the forecast and the actual move are
  non-zero) with a 95 % Wilson interval;
- interval coverage against the nominal level;
- skill against persistence, ``1 - MSE / MSE_persistence`` on returns (the
  headline) and on prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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


def diebold_mariano(err_a: np.ndarray, err_b: np.ndarray) -> tuple[float, float]:
    """DM test of equal squared error for one-step forecasts: (statistic, two-sided p-value).

    Negative statistic: ``a`` has the smaller errors. One-step-ahead loss
    differentials are serially uncorrelated under the null, so no HAC lag.
    """
    d = err_a ** 2 - err_b ** 2
    n = len(d)
    sd = float(np.std(d, ddof=1)) if n > 1 else 0.0
    if n < 2 or sd == 0.0:
        return (0.0, 1.0)
    stat = float(np.mean(d) / (sd / math.sqrt(n)))
    return (stat, math.erfc(abs(stat) / math.sqrt(2)))


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
        return self.design(x_scaled) @ self.coef


def linear_ar(train: Samples, test: Samples, level: float, transform: Any) -> Forecast:
    """The linear baseline on the same scaled features (``transform`` = the model's scaler)."""
    ar = LinearAR.fit(transform(train.x), train.y)
    band = _residual_band(train, ar.predict_z(transform(train.x)) * train.sigma, level)
    return _with_band("linear_ar", ar.predict_z(transform(test.x)) * test.sigma, test.sigma, band)
