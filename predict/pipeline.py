"""Train -> evaluate on the holdout -> register (and maybe promote); load a registered model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from predict.data import BarSeries
from predict.evaluate import ALL, MODEL, holdout
from predict.features import Scaler, min_history
from predict.model import Forecaster, ModelConfig, load_keras_model
from predict.registry import MODEL_FILE, SCALERS, Registry, RegistryError, code_version
from predict.report import date_of, markdown_table, table_json


def training_ranges(series: Sequence[BarSeries]) -> dict[str, dict[str, Any]]:
    return {s.symbol: {"bars": len(s), "from": date_of(int(s.start_ms[0])), "to": date_of(int(s.start_ms[-1])),
                       "from_ms": int(s.start_ms[0]), "to_ms": int(s.start_ms[-1]), "bar_seconds": s.bar_seconds}
            for s in series}


def train_and_register(series: Sequence[BarSeries], registry: Registry, *, source: str,
                       config: ModelConfig = ModelConfig(), holdout_fraction: float = 0.15,
                       promote: bool = True, code: str | None = None,
                       log: Callable[[str], None] = print) -> dict[str, Any]:
    """Train on all but the time-last ``holdout_fraction``, score that holdout, register the model.

    The registered skill is the holdout skill of exactly the model that is
    stored (it is not retrained on the holdout afterwards).
    """
    log(f"training on {len(series)} series from {source}: {', '.join(s.symbol for s in series)}")
    forecaster, ev = holdout(series, config, holdout_fraction=holdout_fraction, log=log)
    table = ev.table()
    skill = float(table[ALL][MODEL]["skill"])
    fold = ev.folds[0]
    meta = {
        "skill": skill,
        "skill_by_symbol": {s: float(rows[MODEL]["skill"]) for s, rows in table.items() if s != ALL},
        "coverage": float(table[ALL][MODEL]["coverage"]),
        "interval_level": config.interval_level,
        "source": source,
        "config": config.to_dict(),
        "features": list(config.features),
        "min_history_bars": min_history(config.window),
        "data": training_ranges(series),
        "training_range": {"train_from": date_of(fold["train_from_ms"]), "val_to": date_of(fold["val_to_ms"]),
                           "holdout_from": date_of(fold["test_from_ms"]), "holdout_to": date_of(fold["test_to_ms"])},
        "split": fold,
        "code_version": code or code_version(),
        "framework": _framework(),
    }
    md = "\n\n".join(f"## {sym}\n\n{markdown_table(rows)}" for sym, rows in table.items())
    files = {"evaluation.md": f"# Holdout evaluation\n\n{md}\n",
             "evaluation.json": table_json(ev, table, {"kind": "holdout", "source": source})}
    stored = registry.register(lambda p: forecaster.model.save(p), {"features": forecaster.scaler.to_dict()},
                               meta, files, promote=promote)
    log(f"registered {stored['version']}: holdout skill {skill:+.4f} vs persistence, coverage "
        f"{meta['coverage']:.3f} (nominal {config.interval_level:.2f}); {stored['status']}: {stored['status_reason']}")
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
