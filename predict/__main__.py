"""``python -m predict train|evaluate|list|promote|serve|ensure-model``.

Settings are read here, once, by the one loader: the usual process settings, among them
``MODEL_REGISTRY`` (default ``$TICKERBELL_VAR/models``, :attr:`~events.settings.Settings.registry_root`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from events.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def registry_root(settings: Settings) -> Path:
    return settings.registry_root


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", choices=["offline", "sim-history", "csv", "bars", "metrics", "yfinance"],
                   default="offline",
                   help="offline: bokeh-sampledata daily bars 2000-2013 (default); sim-history: the seeded "
                        "simulated history the ingest backfill publishes, at BAR_SECONDS (the bars make run "
                        "serves); csv: --csv FILE; bars: the bars projection table (DATABASE_URL); metrics: a "
                        "replay of the metrics topic; yfinance: Yahoo history (network)")
    p.add_argument("--csv", help="CSV file for --source csv")
    _add_sim_args(p)
    p.add_argument("--bar-seconds", type=int, help="bar size for csv/bars/metrics/sim-history "
                                                   "(default: 86400 for csv, BAR_SECONDS otherwise)")
    p.add_argument("--period", default="5y", help="yfinance period")
    p.add_argument("--interval", default="1d", help="yfinance interval")
    p.add_argument("--epochs", type=int, help="maximum epochs (early stopping usually ends sooner)")
    p.add_argument("--window", type=int, help="bars per input window")
    p.add_argument("--seed", type=int)


def _add_sim_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--symbols", help="comma-separated symbols (default: all in the source; for sim-history "
                                     "the simulator's demo symbols)")
    p.add_argument("--bars", type=int, help="sim-history: bars per symbol (default 1000)")
    p.add_argument("--end-ms", type=int, help="sim-history: the history ends before this time (default now; "
                                              "fix it to reproduce a run)")


#: demo symbols ``ensure-model`` trains on by default: 10 x 1000 bars train in about 15 s on 2 shared cores
#: (all 20 took 45 s under load); the features are volatility-scaled, so the model serves the others too
ENSURE_MODEL_SYMBOLS = 10


def sim_history(args: argparse.Namespace, settings: Settings, symbols: list[str] | None,
                default_count: int | None = None) -> tuple[list[Any], str]:
    from ingest.sim import DEFAULT_SYMBOLS
    from predict import data

    bs = getattr(args, "bar_seconds", None) or settings.bar_seconds
    n = args.bars or data.SIM_HISTORY_BARS
    symbols = symbols or list(DEFAULT_SYMBOLS[:default_count])
    series = data.load_sim_history(symbols, bar_seconds=bs, n_bars=n, end_ms=args.end_ms)
    return series, f"sim-history (seeded simulated history, as the ingest backfill; {bs}s bars, {n} per symbol)"


def parse_symbols(raw: str | None) -> list[str] | None:
    return [s.strip().upper() for s in raw.split(",") if s.strip()] if raw else None


def load_series(args: argparse.Namespace, settings: Settings) -> tuple[list[Any], str]:
    from predict import data

    symbols = parse_symbols(args.symbols)
    if args.source == "sim-history":
        return sim_history(args, settings, symbols)
    if args.source == "offline":
        return data.load_offline(symbols or data.OFFLINE_SYMBOLS), "offline (bokeh-sampledata, adjusted close)"
    if args.source == "csv":
        if not args.csv:
            raise data.DataError("--source csv needs --csv FILE")
        series = data.load_csv(args.csv, bar_seconds=args.bar_seconds or data.DAY_S)
        return [s for s in series if symbols is None or s.symbol in symbols], f"csv {args.csv}"
    if args.source == "bars":
        from events.db import session_factory

        bs = args.bar_seconds or settings.bar_seconds
        return data.load_bars_table(session_factory(settings), bar_seconds=bs, symbols=symbols,
                                    min_bars=100), f"bars table ({bs}s bars)"
    if args.source == "metrics":
        bs = args.bar_seconds or settings.bar_seconds
        return data.load_metrics_topic(settings, bar_seconds=bs, symbols=symbols), \
            f"replay of {settings.topic('metrics')} ({bs}s bars)"
    return data.fetch_yfinance(symbols or ["AAPL", "MSFT"], period=args.period, interval=args.interval), \
        f"yfinance {args.period} {args.interval}"


def model_config(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from predict.model import ModelConfig

    c = ModelConfig()
    for name in ("epochs", "window", "seed"):
        if getattr(args, name, None) is not None:
            c = replace(c, **{name: getattr(args, name)})
    return c


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from predict.pipeline import train_and_register
    from predict.registry import Registry

    series, source = load_series(args, settings)
    meta = train_and_register(series, Registry(registry_root(settings)), source=source, config=model_config(args),
                              promote=not args.no_promote, data_source=args.source)
    return 0 if meta else 1


def cmd_ensure_model(args: argparse.Namespace, settings: Settings) -> int:
    """Make sure a model for the bars this deployment serves (``BAR_SECONDS``) is promoted.

    A promoted model of another bar size (a daily one from an earlier version) serves nothing
    (``predict serve`` skips bars of other sizes), so it is replaced, by force: its skill was
    measured on other bars and does not compare.
    """
    from predict.data import DAY_S, load_offline
    from predict.pipeline import train_and_register
    from predict.registry import Registry, model_bar_seconds

    registry = Registry(registry_root(settings))
    current = registry.promoted_version()
    wanted = DAY_S if args.source == "offline" else settings.bar_seconds
    force_reason = None
    if current is not None:
        trained = model_bar_seconds(registry.meta(current))
        if trained is None or trained == wanted:
            print(f"model {current} is promoted in {registry.root}: nothing to do")
            return 0
        force_reason = f"{current} was trained on {trained} s bars and cannot serve {wanted} s bars"
        print(f"model {current} in {registry.root} was trained on {trained} s bars, not on the {wanted} s bars "
              "to serve: training one for them")
    if args.source == "offline":
        print(f"{'' if current else f'no promoted model in {registry.root}: '}training a small one on the "
              "offline sample data (daily bars)")
        train_and_register(load_offline(), registry, source="offline (bokeh-sampledata, adjusted close)",
                           config=model_config(args), data_source="offline", force_reason=force_reason)
        return 0
    series, source = sim_history(args, settings, parse_symbols(args.symbols), ENSURE_MODEL_SYMBOLS)
    if current is None:
        print(f"no promoted model in {registry.root}: training a small one on {len(series)} symbols of simulated "
              f"history at {settings.bar_seconds} s bars (BAR_SECONDS), the bars `make run` serves")
    train_and_register(series, registry, source=source, config=model_config(args), data_source="sim-history",
                       force_reason=force_reason)
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from predict.evaluate import ALL, MODEL, walk_forward
    from predict.pipeline import bar_seconds_of
    from predict.report import plot_symbol, render_markdown, table_json, verdict

    series, source = load_series(args, settings)
    config = model_config(args)
    t0 = time.perf_counter()
    ev = walk_forward(series, config, folds=args.folds, test_fraction=args.test_fraction)
    table = ev.table()
    out = Path(args.out or settings.var_dir / "predict" / "evaluation")
    doc = Path(args.doc) if args.doc else None
    plots_dir = doc.parent / "forecast-evaluation" if doc else out
    command = "python -m predict " + " ".join(sys.argv[1:] if args.argv is None else args.argv)
    preamble = _preamble(command, source, series, config, args, table, time.perf_counter() - t0)
    md = render_markdown(ev, table, title="Forecast evaluation", preamble=preamble,
                         bar_seconds=bar_seconds_of(series))
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.md").write_text(md)
    (out / "evaluation.json").write_text(table_json(ev, table, {"command": command, "source": source,
                                                                "config": config.to_dict()}))
    for s in series:
        plot_symbol(ev, s.symbol, plots_dir / f"{s.symbol}.png")
    if doc:
        doc.write_text(md)
        (plots_dir / "evaluation.json").write_text((out / "evaluation.json").read_text())
    print(md)
    skill = table[ALL][MODEL]["skill"]
    print(f"headline: LSTM skill vs persistence {skill:+.4f} over {table[ALL][MODEL]['n']} held-out bars: "
          f"the model {verdict(skill, table[ALL][MODEL]['dm_p_vs_persistence'])}")
    print(f"saved {out / 'evaluation.md'}, {out / 'evaluation.json'} and plots in {plots_dir}"
          + (f"; wrote {doc}" if doc else ""))
    return 0


def _preamble(command: str, source: str, series: Sequence[Any], config: Any, args: argparse.Namespace,
              table: dict[str, Any], elapsed_s: float) -> str:
    from predict.evaluate import ALL, MODEL
    from predict.registry import code_version
    from predict.report import verdict

    skill = table[ALL][MODEL]["skill"]
    syms = ", ".join(f"{s.symbol} ({len(s)} bars)" for s in series)
    return "\n".join([
        "Produced by:", "", "```", command, "```", "",
        f"Data: {source}: {syms}. Code version {code_version()}; took {elapsed_s:.0f} s on this machine.", "",
        f"**Headline: over every held-out bar the LSTM's skill against persistence is {skill:+.4f}, so it "
        f"{verdict(skill, table[ALL][MODEL]['dm_p_vs_persistence'])}.** Skill = 1 − MSE_model / MSE_persistence on next-bar log returns "
        "(positive is better than \"tomorrow's close = today's\"; 0 is no better).", "",
        f"Method: walk-forward, expanding origin, {args.folds} folds over the last {args.test_fraction:.0%} "
        "of the samples (by time). In each fold one LSTM is trained on every symbol's windows whose target bar "
        "lies before the origin (the last 15 % of them only for early stopping; feature scalers fitted on the "
        "rest), then forecasts each bar of the fold one step ahead. Baselines are fitted on the same data: "
        "persistence (zero return), drift (the symbol's mean training return), linear AR (least squares, "
        "small ridge, on the same scaled feature windows).", "",
        f"Model: LSTM({config.units}) over {config.window}-bar windows of {len(config.features)} stationary "
        f"features ({', '.join(config.features)}), predicting quantiles {', '.join(map(str, config.quantiles))} "
        "of the next log return divided by its trailing 20-bar volatility (pinball loss); the median is the "
        f"point forecast, the outer quantiles the {config.interval_level:.0%} interval. Baseline intervals: "
        "their point forecast plus the 10 %/90 % quantiles of their volatility-scaled training residuals.", "",
        "Directional accuracy counts bars where both the forecast and the actual move are non-zero "
        "(persistence never predicts a move). Prices: adjusted close; open/high/low/volume rescaled by the "
        "adjustment factor, since the source does not split-adjust them.",
    ])


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from predict.registry import Registry, model_bar_seconds

    registry = Registry(registry_root(settings))
    promoted = registry.promoted_version()
    versions = registry.versions()
    if not versions:
        print(f"no models in {registry.root}")
        return 0
    print(f"models in {registry.root}:")
    print(f"  {'version':<9} {'created (UTC)':<17} {'bar s':>6} {'skill':>8} {'coverage':>8}  {'status':<13} "
          f"{'code':<19} source / reason")
    for m in versions:
        mark = "*" if m["version"] == promoted else " "
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(m["created_at_ms"] / 1000))
        bs = model_bar_seconds(m)
        print(f"{mark} {m['version']:<9} {created:<17} {bs if bs else '?':>6} {m['skill']:>+8.4f} "
              f"{m.get('coverage', float('nan')):>8.3f}  "
              f"{m['status']:<13} {m.get('code_version', '?'):<19} {m.get('source', '')}"
              + (f" — {m['status_reason']}" if m.get("status_reason") else ""))
    return 0


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    from predict.registry import Registry

    decision = Registry(registry_root(settings)).promote(args.version, force=args.force)
    print(("promoted " if decision.promoted else "not promoted ") + f"{args.version}: {decision.reason}")
    return 0 if decision.promoted else 1


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from predict.registry import Registry
    from predict.serve import serve, stored_history

    from events.observability import serve_metrics, setup_logging

    from events.kafka import ShutdownFlag

    shutdown = ShutdownFlag().install()  # first: SIGTERM during TensorFlow's import must stop cleanly too
    setup_logging("predict", settings.log_level)
    serve_metrics(settings.metrics_port)
    stats = serve(settings, Registry(registry_root(settings)), group_id=args.group, shutdown=shutdown,
                  reload_every_s=args.reload_every_s, wait_for_model=not args.exit_if_no_model,
                  history_source=None if args.no_warm_start else stored_history(settings))
    if stats is None:
        return 3 if args.exit_if_no_model else 0
    print(f"predict: consumed {stats.consumed} bars, produced {stats.produced} predictions, {stats.dlq} to DLQ")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m predict", description="Tickerbell forecasts")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train", help="train, evaluate on a holdout, register (and promote if not worse)")
    _add_data_args(p)
    p.add_argument("--no-promote", action="store_true", help="register only")
    p = sub.add_parser("evaluate", help="walk-forward evaluation against baselines: table + plots")
    _add_data_args(p)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--test-fraction", type=float, default=0.4)
    p.add_argument("--out", help="output folder (default var/predict/evaluation)")
    p.add_argument("--doc", help="also write the Markdown here (plots beside it in forecast-evaluation/)")
    sub.add_parser("list", help="registered model versions (* = promoted)")
    p = sub.add_parser("promote", help="promote a version if its skill is not worse than the current one")
    p.add_argument("version")
    p.add_argument("--force", action="store_true", help="promote even if its skill is worse")
    p = sub.add_parser("serve", help="metrics -> predictions with the promoted model")
    p.add_argument("--group", default="predict", help="consumer group (prefixed like topics)")
    p.add_argument("--reload-every-s", type=float, default=5.0, help="how often to check for a newly promoted model")
    p.add_argument("--exit-if-no-model", action="store_true", help="exit (status 3) instead of waiting for a model")
    p.add_argument("--no-warm-start", action="store_true",
                   help="do not fill a new symbol's window from the bars table (DATABASE_URL)")
    p = sub.add_parser("ensure-model", help="train on simulated history at BAR_SECONDS if no model for that "
                                            "bar size is promoted")
    p.add_argument("--source", choices=["sim-history", "offline"], default="sim-history",
                   help="sim-history: the seeded history the ingest backfill publishes (default); offline: "
                        "the daily sample data (a daily model serves no BAR_SECONDS bars unless BAR_SECONDS=86400)")
    _add_sim_args(p)
    p.add_argument("--epochs", type=int)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "list": cmd_list, "promote": cmd_promote,
                "serve": cmd_serve, "ensure-model": cmd_ensure_model}
    from predict.data import DataError
    from predict.registry import RegistryError

    try:
        return commands[args.cmd](args, settings)
    except (DataError, RegistryError, ValueError) as exc:  # ValueError: too little data to train or evaluate
        print(f"predict {args.cmd}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
