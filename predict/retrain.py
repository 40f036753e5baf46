"""Retraining: train a candidate on recent bars, hold it and the serving model to the same held-out
bars, and promote the candidate only on a significant non-inferiority.

The registry's own rule (promote when the holdout skill is not lower) compares
skills measured on different holdouts; a retrain can do better, since both
models can forecast the candidate's holdout. The test is one-sided on the
loss differential ``d_t = e_cand^2 - (1 + margin) e_cur^2`` (per-date mean
over symbols, as the pooled evaluation row; Newey-West variance,
``predict.metrics.dm_test``): H0 "the candidate's MSE is more than ``margin``
above the current's" is rejected at ``alpha`` before the candidate serves.

The current model may have been trained on some of those bars (an older
model's training range can overlap a newer holdout), which favours it: the
test errs towards keeping what serves, the safe side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from predict.data import BarSeries
from predict.dataset import Samples, build_samples
from predict.metrics import dm_test, pooled_differential
from predict.model import ModelConfig
from predict.pipeline import load_forecaster, train_and_register
from predict.registry import Registry, model_bar_seconds


@dataclass(frozen=True)
class RetrainDecision:
    promote: bool
    reason: str
    p: float | None = None
    n: int = 0
    mse_candidate: float | None = None
    mse_current: float | None = None


def non_inferiority(err_candidate: np.ndarray, err_current: np.ndarray, times: np.ndarray, *,
                    margin: float = 0.01, alpha: float = 0.05) -> RetrainDecision:
    """One-sided test that the candidate's squared error is at most ``1 + margin`` times the current's."""
    err_candidate, err_current = np.asarray(err_candidate, float), np.asarray(err_current, float)
    _, d = pooled_differential(err_candidate ** 2 - (1 + margin) * err_current ** 2, times)
    r = dm_test(d)
    p_one = r.p / 2 if r.stat < 0 else 1 - r.p / 2
    mse_c, mse_k = float(np.mean(err_candidate ** 2)), float(np.mean(err_current ** 2))
    ratio = mse_c / mse_k if mse_k > 0 else float("inf")
    if p_one < alpha:
        return RetrainDecision(True, f"non-inferior on {r.n} shared held-out dates: MSE ratio {ratio:.4f} "
                                     f"(margin {margin:.0%}, one-sided p {p_one:.3g} < {alpha})",
                               p_one, r.n, mse_c, mse_k)
    return RetrainDecision(False, f"not shown non-inferior on {r.n} shared held-out dates: MSE ratio {ratio:.4f} "
                                  f"(margin {margin:.0%}, one-sided p {p_one:.3g} >= {alpha}); the current model "
                                  "keeps serving", p_one, r.n, mse_c, mse_k)


def _holdout_errors(registry: Registry, version: str, series: Sequence[BarSeries],
                    from_ms: int) -> dict[tuple[str, int], float]:
    """``{(symbol, target start): forecast error}`` of one stored model on the bars from ``from_ms``."""
    forecaster, _ = load_forecaster(registry, version)
    s: Samples = build_samples(series, forecaster.config.window)
    s = s.subset(s.target_start_ms >= from_ms)
    r_hat = forecaster.predict_returns(s.x, s.sigma)[:, 1]
    err = r_hat - s.actual_return
    return {(str(sym), int(t)): float(e) for sym, t, e in zip(s.symbol, s.target_start_ms, err)}


def retrain(series: Sequence[BarSeries], registry: Registry, *, source: str, config: ModelConfig = ModelConfig(),
            holdout_fraction: float = 0.15, margin: float = 0.01, alpha: float = 0.05,
            data_source: str | None = None, log: Callable[[str], None] = print) -> tuple[dict[str, Any], RetrainDecision]:
    """Train and register a candidate on ``series``; promote it only if it is non-inferior to the
    promoted model on the candidate's holdout (or if nothing comparable serves). Returns the
    candidate's registry record and the decision."""
    current = registry.promoted()
    stored = train_and_register(series, registry, source=source, config=config, holdout_fraction=holdout_fraction,
                                promote=False, data_source=data_source, log=log)
    version = stored["version"]
    if current is None:
        decision = RetrainDecision(True, "first model (none was promoted before)")
    elif None not in (theirs := model_bar_seconds(registry.meta(current["version"])),
                      mine := model_bar_seconds(stored)) and theirs != mine:
        decision = RetrainDecision(True, f"the promoted {current['version']} serves other bars than these")
    else:
        from_ms = int(stored["trained_on"]["holdout_from_ms"])
        cand = _holdout_errors(registry, version, series, from_ms)
        cur = _holdout_errors(registry, current["version"], series, from_ms)
        keys = sorted(set(cand) & set(cur), key=lambda k: (k[1], k[0]))
        if len(keys) < 3:
            decision = RetrainDecision(False, f"only {len(keys)} held-out bars both models forecast: kept")
        else:
            decision = non_inferiority(np.array([cand[k] for k in keys]), np.array([cur[k] for k in keys]),
                                       np.array([k[1] for k in keys]), margin=margin, alpha=alpha)
    if decision.promote:
        registry.promote(version, force=True, why=f"retrain: {decision.reason}")
    else:
        registry._set_status(version, "not_promoted", f"retrain: {decision.reason}")
    log(f"retrain {version}: {'promoted' if decision.promote else 'kept'} ({decision.reason})")
    return registry.meta(version), decision
