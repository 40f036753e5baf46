"""Evaluation output: the per-symbol table as Markdown and JSON, and a PNG per symbol."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from predict.evaluate import ALL, MODEL, Evaluation

LABELS = {"lstm": "LSTM (quantile)", "persistence": "persistence", "drift": "drift", "linear_ar": "linear AR"}


def _f(x: Any, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return format(x, fmt)


def date_of(ms: int | None, bar_seconds: int = 86_400) -> str:
    """The UTC date of ``ms``; with the time of day for intraday bars (a day of 60 s bars is 1440 of them)."""
    if ms is None:
        return "—"
    fmt = "%Y-%m-%d" if bar_seconds >= 86_400 else "%Y-%m-%d %H:%M UTC"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime(fmt)


def verdict(skill: float, p: float | None = None, alpha: float = 0.05) -> str:
    """What the skill lets one say: better or worse only where the DM test rejects equality at ``alpha``.

    Without a p-value nothing is claimed beyond the sign of the sample skill.
    """
    if p is None:
        return ("has a positive sample skill, untested for significance" if skill > 0 else
                "does not beat persistence (no better than a zero-return forecast)")
    if skill > 0 and p < alpha:
        return "beats persistence"
    if skill < 0 and p < alpha:
        return "is worse than persistence"
    return f"does not differ significantly from persistence (p = {p:.2f}: no better than a zero-return forecast)"


def interpretation(table: dict[str, dict[str, dict[str, Any]]], level: float) -> list[str]:
    """Plain sentences drawn from the figures, so the doc cannot claim more than they show."""
    pooled = table[ALL][MODEL]
    pers = table[ALL]["persistence"]
    syms = [s for s in table if s != ALL]
    beats = [s for s in syms if table[s][MODEL]["skill"] > 0 and table[s][MODEL]["dm_p_vs_persistence"] < 0.05]
    below_up = [s for s in syms if table[s][MODEL]["direction_accuracy"] is not None
                and table[s][MODEL]["direction_always_up"] is not None
                and table[s][MODEL]["direction_accuracy"] <= table[s][MODEL]["direction_always_up"]]
    coin = [s for s in syms if table[s][MODEL]["direction_ci95"] and table[s][MODEL]["direction_ci95"][0] <= 0.5]
    lines = [
        f"- Pooled skill {pooled['skill']:+.4f} (DM p = {pooled['dm_p_vs_persistence']:.2f}): "
        + ("the LSTM's next-bar forecasts are better than persistence." if pooled["skill"] > 0
           and pooled["dm_p_vs_persistence"] < 0.05 else
           "the LSTM's point forecasts are **not** better than \"tomorrow's close = today's\"; "
           "treat the output as a range around the last close, not as a trading signal."),
        f"- Symbols where the LSTM beats persistence with p < 0.05: {', '.join(beats) if beats else 'none'}.",
        f"- Directional accuracy: the 95 % interval includes 50 % (a coin flip) for "
        f"{len(coin)} of {len(syms)} symbols" + (f" ({', '.join(coin)})." if coin else ".")
        + f" \"Always up\" does as well or better on the same bars for {len(below_up)} of {len(syms)}"
        + (f" ({', '.join(below_up)})." if below_up else "."),
        f"- Interval: pooled coverage {pooled['coverage']:.3f} against the nominal {level:.2f}, mean width "
        f"{pooled['mean_interval_width_return']:.4f} in log return; persistence with a volatility-scaled residual "
        f"band covers {pers['coverage']:.3f} at width {pers['mean_interval_width_return']:.4f}. "
        + ("The LSTM's interval is as good or better (narrower at no less coverage)."
           if pooled["coverage"] >= pers["coverage"] - 0.01
           and pooled["mean_interval_width_return"] <= pers["mean_interval_width_return"] * 1.01
           else "The LSTM's interval is not better than that simple band."),
        f"- Linear AR on the same features: pooled skill {table[ALL]['linear_ar']['skill']:+.4f}; drift "
        f"{table[ALL]['drift']['skill']:+.4f}.",
    ]
    return lines


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    head = ("| method | n | skill (return MSE) | DM p | skill (price MSE) | RMSE return | MAE return | RMSE price | "
            "MAE price | MAPE % | direction (95 % CI) | always up / last move | coverage (nominal) |")
    lines = [head, "|" + "---|" * 13]
    for method, r in rows.items():
        ci = r["direction_ci95"]
        direction = "—" if r["direction_accuracy"] is None else (
            f"{r['direction_accuracy']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] (n={r['direction_n']})")
        baselines = (f"{_f(r.get('direction_always_up'), '.3f')} / {_f(r.get('direction_last_move'), '.3f')}"
                     if r["direction_accuracy"] is not None else "—")
        if method == "persistence":
            direction = "— (predicts no move)"
        lines.append(
            f"| {LABELS.get(method, method)} | {r['n']} | {_f(r['skill'], '+.4f')} | "
            f"{'—' if method == 'persistence' else _f(r.get('dm_p_vs_persistence'), '.3f')} | "
            f"{_f(r['skill_price'], '+.4f')} | "
            f"{_f(r['rmse_return'], '.5f')} | {_f(r['mae_return'], '.5f')} | {_f(r['rmse_price'], '.3f')} | "
            f"{_f(r['mae_price'], '.3f')} | {_f(r['mape_pct'], '.3f')} | {direction} | {baselines} | "
            f"{_f(r['coverage'], '.3f')} ({r['nominal_coverage']:.2f}) |")
    return "\n".join(lines)


SERVED_MODEL = (
    "`make run` runs `python -m predict ensure-model` before the processes start. When no model for the "
    "bars this deployment serves (`BAR_SECONDS`, 60 s by default) is promoted, it trains one on the seeded "
    "simulated history the ingest backfill publishes (`ingest.history.simulated_history`, 1000 bars for "
    "each of 10 demo symbols, ending now; `--source sim-history` of `train` and `evaluate` reads the same), "
    "not on daily bars, and scores it on the time-last 15 % of the samples. Its registry record "
    "(`trained_on` in `meta.json`) and every `Prediction` it serves carry the bar size, the data source, "
    "the first and last bar of the training data and of the holdout, the holdout's n and the "
    "Diebold–Mariano p-value of its skill; the symbol page shows them and calls the model better than no "
    "change only when that skill is positive at p < 0.05. The simulated prices are a random walk, so the "
    "honest skill there is zero and the band is a volatility range, not a signal. A model forecasts only "
    "bars of its own size (`predict serve` skips the others and logs it once), and `ensure-model` replaces "
    "a promoted model of another size: skills measured on different bars do not compare, so the registry "
    "promotes across bar sizes only by force. Backfilled history fills the serving windows, so a symbol "
    "with history gets a forecast on its first live bar (and on the newest history bar while the bar it "
    "forecasts is still open); older history bars get none, since those would be forecasts of the past."
)


LIVE_SCOREBOARD = (
    "The holdout above is what a model scored before it was served. What it serves is scored too: the "
    "projector joins every `Prediction` with the bar it forecast (the bar whose start is `base_start_ms + "
    "horizon_bars * bar_seconds`), whichever of the two arrives first, into `forecast_scores` (one row per "
    "prediction: the error, whether the interval held, persistence's error on the same bar, and whether the "
    "forecast, \"always up\" and \"always the last move\" called the direction; `predict/scoreboard.py`). "
    "`tickerbell rebuild` replays it like every projection. Per symbol and model version, over the newest "
    "500 scores, `GET /api/symbols/<symbol>/scoreboard`, the symbol page and the projector's gauges "
    "(`tickerbell_forecast_live_skill`, `_skill_p`, `_n`, `_coverage`, `tickerbell_forecast_nominal_coverage`) "
    "give the live skill against persistence with the same HAC Diebold–Mariano test as this document, its "
    "n, the interval's coverage against its nominal level, and the direction beside the two baselines. The "
    "page calls a model better than no change only when its live or its holdout skill is positive at "
    "p < 0.05 over at least 100 samples, and flags an interval that holds more than 10 points off its claim.\n\n"
    "Retraining (`predict/retrain.py`, scheduled by the Celery app `predict.tasks` every "
    "`PREDICT_RETRAIN_INTERVAL_S`, off by default) trains a candidate on the newest stored bars at the serving "
    "bar size and holds it and the serving model to the same held-out bars; it is promoted only when a "
    "one-sided Diebold–Mariano test (same HAC variance, per-date pooling) shows its squared error at most "
    "1 % above the serving model's at p < 0.05 (`PREDICT_RETRAIN_MARGIN`, `PREDICT_RETRAIN_ALPHA`); "
    "otherwise it is kept as `not_promoted` with the figures."
)


def render_markdown(ev: Evaluation, table: dict[str, dict[str, dict[str, Any]]], *, title: str,
                    preamble: str = "", bar_seconds: int = 86_400) -> str:
    out = [f"# {title}", ""]
    if preamble:
        out += [preamble.rstrip(), ""]
    out += ["## Headline: skill against persistence", "",
            "| symbol | LSTM skill | DM p-value vs persistence (n, HAC lag) | linear AR skill (p) | drift skill | "
            "verdict |",
            "|---|---|---|---|---|---|"]
    for sym, rows in table.items():
        m = rows[MODEL]
        dates = " dates" if sym == ALL else ""
        out.append(f"| {sym} | {m['skill']:+.4f} | {m['dm_p_vs_persistence']:.3f} ({m.get('dm_n')}{dates}, "
                   f"lag {m.get('dm_lag')}) | "
                   f"{rows['linear_ar']['skill']:+.4f} ({rows['linear_ar']['dm_p_vs_persistence']:.3f}) | "
                   f"{rows['drift']['skill']:+.4f} | the LSTM {verdict(m['skill'], m['dm_p_vs_persistence'])} |")
    out += ["", "DM p-value: Diebold–Mariano test of equal squared return error against persistence "
            "(small = the difference is unlikely to be chance), two-sided, with a Newey–West (Bartlett) "
            "long-run variance at lag floor(4 (n/100)^(2/9)), the Harvey–Leybourne–Newbold small-sample "
            "factor and Student t with n − 1 degrees of freedom. The pooled row tests one series: the "
            "per-date loss differential averaged across symbols (symbols on one date are not independent), "
            "so its n counts dates. The verdict says \"beats\" or \"is worse\" only at p < 0.05. "
            "Direction: hit rate on bars where both forecast and outcome moved, beside \"always up\" and "
            "\"always the last move\" on the same bars."]
    out += ["", "## What this means", "", *interpretation(table, ev.level)]
    out += ["", "## The model `make run` serves", "", SERVED_MODEL]
    out += ["", "## Served forecasts, scored live", "", LIVE_SCOREBOARD]
    out += ["", "## Folds (expanding origin)", "",
            "| fold | train targets | early-stopping targets | test targets | train / val / test windows | epochs |",
            "|---|---|---|---|---|---|"]
    for f in ev.folds:
        d = {k: date_of(v, bar_seconds) for k, v in f.items() if k.endswith("_ms")}
        out.append(f"| {f['fold']} | {d['train_from_ms']} – {d['train_to_ms']} | "
                   f"{d['val_from_ms']} – {d['val_to_ms']} | "
                   f"{d['test_from_ms']} – {d['test_to_ms']} | "
                   f"{f['n_train']} / {f['n_val']} / {f['n_test']} | {f['epochs']} |")
    for sym, rows in table.items():
        out += ["", f"## {'All symbols pooled' if sym == ALL else sym}", "", markdown_table(rows)]
        if sym != ALL:
            out += ["", f"![{sym}: actual vs predicted close](forecast-evaluation/{sym}.png)"]
    return "\n".join(out) + "\n"


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    return x


def table_json(ev: Evaluation, table: dict[str, Any], meta: dict[str, Any]) -> str:
    return json.dumps(_jsonable({**meta, "folds": ev.folds, "table": table}), indent=2)


def plot_symbol(ev: Evaluation, symbol: str, path: Path, zoom_bars: int = 120) -> Path:
    """Actual close vs the LSTM's predicted close with its interval: whole test span and its last bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    mask = ev.test.symbol == symbol
    t = ev.test.subset(mask)
    fc = ev.forecasts[MODEL].subset(mask)
    when = np.array([datetime.fromtimestamp(ms / 1000, tz=timezone.utc) for ms in t.target_start_ms])
    pred = t.base_close * np.exp(fc.r_hat)
    lo, hi = t.base_close * np.exp(fc.lower), t.base_close * np.exp(fc.upper)
    fig, axes = plt.subplots(2, 1, figsize=(11, 7), dpi=100)
    for ax, sl in ((axes[0], slice(None)), (axes[1], slice(-zoom_bars, None))):
        ax.fill_between(when[sl], lo[sl], hi[sl], color="tab:blue", alpha=0.25,
                        label=f"{ev.level:.0%} interval", step=None)
        ax.plot(when[sl], t.next_close[sl], color="black", lw=0.9, label="actual close")
        ax.plot(when[sl], pred[sl], color="tab:blue", lw=0.8, label="predicted close (median)")
        # matplotlib.dates is not annotated (the package's stubs leave it out)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{symbol}: one-bar-ahead forecasts on held-out data (walk-forward)")
    axes[1].set_title(f"last {zoom_bars} bars")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
