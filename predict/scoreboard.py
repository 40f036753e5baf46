"""The live scoreboard: every served forecast held against the bar it forecast. Pure.

A prediction based on bar ``t`` forecasts the close of the bar whose start is
``base_start_ms + horizon_bars * bar_seconds``; when that bar has closed the
prediction gets one :class:`Score`: its error, whether its interval held, the
persistence forecast's ("the close stays") error on the same bar, and whether
it, "always up" and "always the last move" called the direction.

:func:`aggregate` turns a time-ordered run of scores of one model on one
symbol into the figures the page, the API and the gauges show: live skill
against persistence with the HAC Diebold-Mariano p-value and n, interval
coverage against nominal, and directional accuracy beside the two baselines.
Live skill is claimed only where :data:`MIN_N` scores back it at p < 0.05.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from predict.metrics import dm_test, significant

#: fewer scores than this are "too few to tell", whatever the p-value says
MIN_N = 100
#: the rolling window the aggregates cover by default (newest scores of one model on one symbol)
WINDOW = 500
ALPHA = 0.05
#: an interval that holds this much more or less often than it claims (over MIN_N scores) is flagged
COVERAGE_MARGIN = 0.1


def target_start_ms(base_start_ms: int, horizon_bars: int, bar_seconds: int) -> int:
    """The start of the bar a prediction forecasts."""
    return base_start_ms + horizon_bars * bar_seconds * 1000


@dataclass(frozen=True)
class Score:
    """One served prediction against the bar it forecast (log returns from the base close)."""

    prediction_id: str
    symbol: str
    bar_seconds: int
    model_version: str
    base_start_ms: int
    target_start_ms: int
    interval_level: float
    actual_close: float
    error: float                   # predicted close - actual close
    error_return: float            # predicted log return - actual log return
    persistence_error_return: float  # 0 - actual log return: "the close stays"
    covered: bool                  # lower <= actual close <= upper
    direction_hit: bool | None     # None where the forecast or the outcome did not move
    up_hit: bool | None            # "always up", on the same bars as direction_hit
    last_move_hit: bool | None     # "always the last move", same bars; None without the base bar's move

    def row(self) -> dict[str, Any]:
        return asdict(self)


def score_prediction(*, prediction_id: str, symbol: str, bar_seconds: int, model_version: str, base_start_ms: int,
                     horizon_bars: int, base_close: float, predicted_close: float, lower: float, upper: float,
                     interval_level: float, actual_close: float, last_change_pct: float | None) -> Score:
    """Score one prediction given its target bar's close and the base bar's own move (``change_pct``)."""
    actual_r = math.log(actual_close / base_close)
    predicted_r = math.log(predicted_close / base_close)
    moved = actual_r != 0 and predicted_r != 0
    last = None if last_change_pct is None or not math.isfinite(last_change_pct) else last_change_pct
    return Score(
        prediction_id=prediction_id, symbol=symbol, bar_seconds=bar_seconds, model_version=model_version,
        base_start_ms=base_start_ms, target_start_ms=target_start_ms(base_start_ms, horizon_bars, bar_seconds),
        interval_level=interval_level, actual_close=actual_close, error=predicted_close - actual_close,
        error_return=predicted_r - actual_r, persistence_error_return=-actual_r,
        covered=lower <= actual_close <= upper,
        direction_hit=(predicted_r > 0) == (actual_r > 0) if moved else None,
        up_hit=actual_r > 0 if moved else None,
        # a flat last bar predicts no direction: a miss, as a flat forecast would be
        last_move_hit=(None if not moved or last is None else (last > 0) == (actual_r > 0) and last != 0),
    )


def _rate(values: Iterable[bool | None]) -> tuple[float | None, int]:
    known = [bool(v) for v in values if v is not None]
    return (sum(known) / len(known) if known else None, len(known))


def aggregate(scores: Sequence[Any], *, min_n: int = MIN_N, alpha: float = ALPHA) -> dict[str, Any]:
    """Figures of one model on one symbol from its scores in target-time order (objects or dicts
    with :class:`Score`'s fields). Skill is ``1 - MSE / MSE_persistence`` on log returns."""
    get = (lambda s, k: s[k]) if scores and isinstance(scores[0], dict) else getattr
    n = len(scores)
    err = np.array([get(s, "error_return") for s in scores], dtype=np.float64)
    pers = np.array([get(s, "persistence_error_return") for s in scores], dtype=np.float64)
    mse, mse_p = (float(np.mean(err ** 2)), float(np.mean(pers ** 2))) if n else (math.nan, math.nan)
    skill = 1 - mse / mse_p if n and mse_p > 0 else None
    dm = dm_test(err ** 2 - pers ** 2) if n else None
    p = dm.p if dm is not None and n >= 3 else None
    coverage = float(np.mean([bool(get(s, "covered")) for s in scores])) if n else None
    nominal = round(float(np.mean([get(s, "interval_level") for s in scores])), 6) if n else None
    accuracy, n_dir = _rate(get(s, "direction_hit") for s in scores)
    up, _ = _rate(get(s, "up_hit") for s in scores)
    last, n_last = _rate(get(s, "last_move_hit") for s in scores)
    better = significant(skill, p, n, alpha=alpha, min_n=min_n)
    flag = None
    if coverage is not None and nominal is not None and n >= min_n:
        flag = ("too_narrow" if coverage < nominal - COVERAGE_MARGIN else
                "too_wide" if coverage > nominal + COVERAGE_MARGIN else None)
    worse = skill is not None and p is not None and skill < 0 and p < alpha and n >= min_n
    return {
        "n": n,
        "from_ms": int(get(scores[0], "target_start_ms")) if n else None,
        "to_ms": int(get(scores[-1], "target_start_ms")) if n else None,
        "skill": skill,
        "dm_p": p,
        "dm_lag": dm.lag if dm is not None else None,
        "rmse_return": math.sqrt(mse) if n else None,
        "rmse_return_persistence": math.sqrt(mse_p) if n else None,
        "mae_price": float(np.mean(np.abs([get(s, "error") for s in scores]))) if n else None,
        "coverage": coverage,
        "nominal_coverage": nominal,
        "coverage_flag": flag,
        "direction": {"n": n_dir, "accuracy": accuracy, "always_up": up, "last_move": last, "last_move_n": n_last},
        "min_n": min_n,
        "verdict": ("better" if better else "worse" if worse else "too_few" if n < min_n else "no_difference"),
    }
