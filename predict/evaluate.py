"""Walk-forward evaluation: train up to an origin, forecast the next stretch, move the origin on.

Expanding origin: fold ``k`` trains on every sample whose target bar starts
before ``origin_k`` (the last ``val_fraction`` of that, by time, only for
early stopping; the scaler is fitted on the rest) and forecasts the targets
in ``[origin_k, origin_{k+1})``. Baselines are fitted on the same training
samples. Nothing from a test stretch reaches its model, scaler or baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from predict.data import BarSeries
from predict.dataset import Samples, build_samples, time_quantile
from predict.metrics import Forecast, add_skill, dm_test, drift, linear_ar, persistence, pooled_differential, score
from predict.model import Forecaster, ModelConfig, fit

MODEL = "lstm"
METHODS = (MODEL, "persistence", "drift", "linear_ar")
ALL = "ALL"


@dataclass
class Evaluation:
    """Held-out samples of every fold, each method's forecasts for them, and how they were made."""

    test: Samples
    forecasts: dict[str, Forecast]
    level: float
    folds: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{symbol: {method: figures}}`` plus ``ALL`` (every symbol pooled).

        The DM test of a symbol runs on its differentials in time order; the pooled
        (``ALL``) test on the per-date mean over symbols (``pooled_differential``), so
        symbols that move together on a date are not counted as independent evidence.
        """
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for sym in [*sorted(set(self.test.symbol.tolist())), ALL]:
            mask = np.ones(len(self.test), bool) if sym == ALL else self.test.symbol == sym
            test = self.test.subset(mask)
            rows = {m: score(test, fc.subset(mask), self.level) for m, fc in self.forecasts.items()}
            add_skill(rows)
            pers_err = self.forecasts["persistence"].r_hat[mask] - test.actual_return
            order = np.argsort(test.target_start_ms, kind="stable")
            for m, fc in self.forecasts.items():
                d = (fc.r_hat[mask] - test.actual_return) ** 2 - pers_err ** 2
                if sym == ALL:
                    _, d = pooled_differential(d, test.target_start_ms)
                else:
                    d = d[order]
                r = dm_test(d)
                rows[m].update({"dm_stat_vs_persistence": r.stat, "dm_p_vs_persistence": r.p,
                                "dm_n": r.n, "dm_lag": r.lag})
            out[sym] = rows
        return out

    def skill(self, symbol: str = ALL) -> float:
        return float(self.table()[symbol][MODEL]["skill"])


def forecast_fold(train_all: Samples, test: Samples, config: ModelConfig, *, val_fraction: float = 0.15,
                  log: Callable[[str], None] = print) -> tuple[Forecaster, dict[str, Forecast], dict[str, Any]]:
    """Train on ``train_all`` (its time-last part for early stopping) and forecast ``test`` by every method."""
    vcut = time_quantile(train_all, 1 - val_fraction)
    train, val = train_all.before(vcut), train_all.subset(train_all.target_start_ms >= vcut)
    forecaster, history = fit(train, val, config, log=log)
    level = config.interval_level
    q = forecaster.predict_returns(test.x, test.sigma)
    forecasts = {
        MODEL: Forecast(MODEL, q[:, 1], q[:, 0], q[:, 2]),
        "persistence": persistence(train_all, test, level),
        "drift": drift(train_all, test, level),
        "linear_ar": linear_ar(train, test, level, forecaster.scaler.transform),
    }
    info = {
        "train_from_ms": int(train.target_start_ms.min()), "train_to_ms": int(train.target_start_ms.max()),
        "val_from_ms": int(val.target_start_ms.min()), "val_to_ms": int(val.target_start_ms.max()),
        "test_from_ms": int(test.target_start_ms.min()) if len(test) else None,
        "test_to_ms": int(test.target_start_ms.max()) if len(test) else None,
        "n_train": len(train), "n_val": len(val), "n_test": len(test),
        "epochs": len(history["loss"]), "best_val_loss": min(history["val_loss"]),
    }
    return forecaster, forecasts, info


def walk_forward(series: Sequence[BarSeries], config: ModelConfig = ModelConfig(), *, folds: int = 4,
                 test_fraction: float = 0.4, val_fraction: float = 0.15,
                 log: Callable[[str], None] = print) -> Evaluation:
    """Expanding-origin evaluation over the last ``test_fraction`` of the samples (by target time)."""
    samples = build_samples(series, config.window)
    start = time_quantile(samples, 1 - test_fraction)
    times = np.sort(samples.target_start_ms[samples.target_start_ms >= start])
    edges = [int(times[int(i * len(times) / folds)]) for i in range(folds)] + [int(times[-1]) + 1]
    tests: list[Samples] = []
    parts: dict[str, list[Forecast]] = {m: [] for m in METHODS}
    infos: list[dict[str, Any]] = []
    for k in range(folds):
        test = samples.between(edges[k], edges[k + 1])
        log(f"fold {k + 1}/{folds}: {len(test)} test windows")
        _, fcs, info = forecast_fold(samples.before(edges[k]), test, config, val_fraction=val_fraction, log=log)
        tests.append(test)
        for m in METHODS:
            parts[m].append(fcs[m])
        infos.append({"fold": k + 1, **info})
    test_all = Samples(**{name: np.concatenate([getattr(t, name) for t in tests])
                          for name in Samples.__dataclass_fields__})
    return Evaluation(test_all, {m: Forecast.concat(parts[m]) for m in METHODS}, config.interval_level, infos)


def holdout(series: Sequence[BarSeries], config: ModelConfig = ModelConfig(), *, holdout_fraction: float = 0.15,
            val_fraction: float = 0.15, log: Callable[[str], None] = print) -> tuple[Forecaster, Evaluation]:
    """Train once on all but the time-last ``holdout_fraction``; evaluate on it (what ``train`` registers)."""
    samples = build_samples(series, config.window)
    cut = time_quantile(samples, 1 - holdout_fraction)
    test = samples.subset(samples.target_start_ms >= cut)
    forecaster, fcs, info = forecast_fold(samples.before(cut), test, config, val_fraction=val_fraction, log=log)
    return forecaster, Evaluation(test, fcs, config.interval_level, [{"fold": 1, **info}])
