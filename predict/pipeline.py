"""Train -> evaluate on the holdout -> register (and maybe promote); load a registered model."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from predict.data import BarSeries, DataError
from predict.evaluate import ALL, MODEL, Evaluation, holdout
from predict.features import Scaler, min_history
from predict.model import Forecaster, ModelConfig, load_keras_model
from predict.registry import MODEL_FILE, SCALERS, Registry, RegistryError, code_version
from predict.report import date_of, markdown_table, table_json


def training_ranges(series: Sequence[BarSeries]) -> dict[str, dict[str, Any]]:
    return {s.symbol: {"bars": len(s), "from": date_of(int(s.start_ms[0]), s.bar_seconds),
                       "to": date_of(int(s.start_ms[-1]), s.bar_seconds),
                       "from_ms": int(s.start_ms[0]), "to_ms": int(s.start_ms[-1]), "bar_seconds": s.bar_seconds}
            for s in series}


def bar_seconds_of(series: Sequence[BarSeries]) -> int:
    """The one bar size of ``series``: a model is trained on one bar size, since it serves one."""
    sizes = sorted({s.bar_seconds for s in series})
    if len(sizes) != 1:
        raise DataError(f"training series must share one bar size, got {sizes or 'none'}")
    return sizes[0]


def trained_on(series: Sequence[BarSeries], ev: Evaluation, data_source: str) -> dict[str, Any]:
    """What a model was trained and evaluated on, in the fields every served ``Prediction`` carries.

    ``trained_from_ms`` is the first bar of the data (windows start there), ``trained_to_ms`` the
    last bar any training or early-stopping target lies on; the holdout is every sample whose
    target bar lies in ``[holdout_from_ms, holdout_to_ms]``, ``holdout_n`` of them.
    ``skill_p`` is the Diebold-Mariano p-value of the holdout skill (two-sided, pooled).
    """
    fold = ev.folds[0]
    row = ev.table()[ALL][MODEL]
    p = row.get("dm_p_vs_persistence")
    return {
        "bar_seconds": bar_seconds_of(series),
        "data_source": data_source,
        "trained_from_ms": int(min(int(s.start_ms[0]) for s in series)),
        "trained_to_ms": int(fold["val_to_ms"]),
        "holdout_from_ms": fold["test_from_ms"],
        "holdout_to_ms": fold["test_to_ms"],
        "holdout_n": int(row["n"]),
        "skill": float(row["skill"]),
        "skill_p": None if p is None or not math.isfinite(p) else min(1.0, max(0.0, float(p))),
    }


def train_and_register(series: Sequence[BarSeries], registry: Registry, *, source: str,
                       config: ModelConfig = ModelConfig(), holdout_fraction: float = 0.15,
                       promote: bool = True, force_reason: str | None = None, code: str | None = None,
                       data_source: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train on all but the time-last ``holdout_fraction``, score that holdout, register the model.

    The registered skill is the holdout skill of exactly the model that is
    stored (it is not retrained on the holdout afterwards). ``data_source`` is
    the short name of the source (``sim-history``, ``offline``, ...; default the
    first word of ``source``). ``force_reason``: promote even if the skill is
    worse than the current model's, and say why.
    """
    bar_seconds_of(series)  # before the training: mixed bar sizes are an error, not a model
    log(f"training on {len(series)} series from {source}: {', '.join(s.symbol for s in series)}")
    forecaster, ev = holdout(series, config, holdout_fraction=holdout_fraction, log=log)
    table = ev.table()
    skill = float(table[ALL][MODEL]["skill"])
    fold = ev.folds[0]
    bs = bar_seconds_of(series)
    on = trained_on(series, ev, (data_source or source.split()[0])[:64])
    meta = {
        "trained_on": on,
        "skill": skill,
        "skill_by_symbol": {s: float(rows[MODEL]["skill"]) for s, rows in table.items() if s != ALL},
        "coverage": float(table[ALL][MODEL]["coverage"]),
        "interval_level": config.interval_level,
        "source": source,
        "config": config.to_dict(),
        "features": list(config.features),
        "min_history_bars": min_history(config.window),
        "data": training_ranges(series),
        "training_range": {k: date_of(fold[f], bs) for k, f in (("train_from", "train_from_ms"), ("val_to", "val_to_ms"),
                                                                 ("holdout_from", "test_from_ms"),
                                                                 ("holdout_to", "test_to_ms"))},
        "split": fold,
        "code_version": code or code_version(),
        "framework": _framework(),
    }
    md = "\n\n".join(f"## {sym}\n\n{markdown_table(rows)}" for sym, rows in table.items())
    files = {"evaluation.md": f"# Holdout evaluation\n\n{md}\n",
             "evaluation.json": table_json(ev, table, {"kind": "holdout", "source": source})}
    stored = registry.register(lambda p: forecaster.model.save(p), {"features": forecaster.scaler.to_dict()},
                               meta, files, promote=promote and force_reason is None)
    if promote and force_reason is not None:
        registry.promote(stored["version"], force=True, why=force_reason)
        stored = registry.meta(stored["version"])
    p = "n/a" if on["skill_p"] is None else f"{on['skill_p']:.3g}"
    log(f"registered {stored['version']}: holdout skill {skill:+.4f} vs persistence (DM p {p}, "
        f"n {on['holdout_n']}), coverage {meta['coverage']:.3f} (nominal {config.interval_level:.2f}); "
        f"{bs} s bars from {on['data_source']}, trained {date_of(on['trained_from_ms'], bs)} to "
        f"{date_of(on['trained_to_ms'], bs)}, holdout {date_of(on['holdout_from_ms'], bs)} to "
        f"{date_of(on['holdout_to_ms'], bs)}; {stored['status']}: {stored['status_reason']}")
    return stored


def _framework() -> dict[str, str]:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def load_forecaster(registry: Registry, version: str | None = None) -> tuple[Forecaster, dict[str, Any]]:
    """The given (or the promoted) version, ready to predict. Raises :class:`RegistryError`."""
    version = version or registry.promoted_version()
    if version is None:
        raise RegistryError(f"no promoted model in {registry.root}: run `python -m predict ensure-model` "
                            "(or `python -m predict train`)")
    path: Path = registry.path(version)
    meta = registry.meta(version)
    scaler = Scaler.from_dict(json.loads((path / SCALERS).read_text())["features"])
    model = load_keras_model(str(path / MODEL_FILE))
    return Forecaster(model, scaler, ModelConfig.from_dict(meta["config"])), meta
