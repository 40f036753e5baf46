"""``python -m ingest``: publish ticks from a source to the ``ticks`` topic.

By default the symbols follow demand (the ``watched`` topic) plus the floor (``--symbols``,
``--num-symbols`` or ``INGEST_SYMBOLS``), and each newly watched symbol is backfilled with
``INGEST_HISTORY_BARS`` closed bars at ``BAR_SECONDS`` (simulated for ``sim``, Yahoo's
history for the Yahoo sources). ``--fixed`` publishes the floor alone, as a benchmark wants.
"""

from __future__ import annotations

import argparse
import sys

from events.contract import HistoryBar
from events.kafka import EventProducer, ShutdownFlag
from events.observability import serve_metrics, setup_logging
from events.settings import Settings, SettingsError, load_settings
from ingest.base import Source
from ingest.demand import DemandFollower
from ingest.runner import HistoryFn, run_ingest


def build_source(args: argparse.Namespace) -> Source:
    symbols = [s.strip().upper() for s in args.symbols.split(",")] if args.symbols else None
    if args.source == "sim":
        from ingest.sim import DEFAULT_SYMBOLS, SimSource, synthetic_symbols

        if args.num_symbols:
            symbols = synthetic_symbols(args.num_symbols)
        return SimSource(symbols or list(DEFAULT_SYMBOLS), seed=args.seed, time_scale=args.time_scale)
    if args.source == "csv":
        from ingest.csvsource import CsvSource

        if not args.file:
            raise SystemExit("--file is required for --source csv (a path, or 'bokeh' for the offline sample data)")
        return CsvSource(args.file, symbol=symbols[0] if symbols else None, bar_ms=args.bar_seconds * 1000)
    if args.source == "yfinance":
        from ingest.yahoo import YahooSource

        return YahooSource(symbols or ["AAPL", "MSFT", "GOOG"], poll_interval_s=args.poll_interval,
                           ignore_market_hours=args.ignore_market_hours)
    if args.source == "yfstream":
        from ingest.yahoo_stream import YAHOO_STREAM_URL, YahooStreamSource

        return YahooStreamSource(symbols or ["AAPL", "MSFT", "GOOG"], url=args.stream_url or YAHOO_STREAM_URL,
                                 silence_s=args.stream_silence)
    raise SystemExit(f"unknown source {args.source}")


def history_for(args: argparse.Namespace, settings: Settings, demand: DemandFollower) -> HistoryFn | None:
    """The backfill for newly watched symbols, or None."""
    kind = args.history
    if kind == "auto":
        kind = "sim" if args.source == "sim" else "yfinance"
    n_bars, bar_s = settings.ingest_history_bars, settings.bar_seconds
    if kind == "none" or n_bars == 0:
        return None
    if kind == "sim":
        from ingest.history import simulated_history

        def sim_history(symbol: str, end_ms: int) -> list[HistoryBar]:
            # as many trades per bar as the live path will give this symbol at this rate, so the
            # volume (and volume ratio) of history and live bars are alike
            sharing = max(1, len(demand.wanted))  # the rate is shared by every followed symbol
            trades = args.rate * bar_s / sharing if args.rate > 0 else None
            return simulated_history(symbol, bar_seconds=bar_s, end_ms=end_ms, n_bars=n_bars, seed=args.seed,
                                     time_scale=args.time_scale, trades_per_bar=trades)

        return sim_history
    from ingest.history import yahoo_history

    return lambda symbol, end_ms: yahoo_history(symbol, bar_seconds=bar_s, end_ms=end_ms, n_bars=n_bars)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ingest", description=__doc__)
    p.add_argument("--source", choices=["sim", "csv", "yfinance", "yfstream"], default="sim",
                   help="yfstream: Yahoo's live streamer; yfinance: polled 1-minute bars (the fallback)")
    p.add_argument("--rate", type=float, default=50.0, help="ticks per second; 0 = as fast as possible")
    p.add_argument("--symbols", help="comma-separated symbols (sim default: 20 large US stocks)")
    p.add_argument("--num-symbols", type=int, help="sim: generate this many symbols instead")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--time-scale", type=float, default=60.0, help="sim: market seconds per wall second")
    p.add_argument("--file", help="csv: path to a ticks or OHLCV CSV, or 'bokeh' for the offline sample data")
    p.add_argument("--bar-seconds", type=int, default=86_400, help="csv: length of one OHLCV row")
    p.add_argument("--poll-interval", type=float, default=30.0, help="yfinance: seconds between polls of a symbol")
    p.add_argument("--ignore-market-hours", action="store_true", help="yfinance: poll outside trading hours too")
    p.add_argument("--stream-url", help="yfstream: the streamer's WebSocket URL (default: Yahoo's, as yfinance has it)")
    p.add_argument("--stream-silence", type=float, default=60.0,
                   help="yfstream: reconnect after this many seconds without a message in market hours")
    p.add_argument("--fixed", action="store_true",
                   help="publish only --symbols/--num-symbols/INGEST_SYMBOLS; do not follow the watched topic")
    p.add_argument("--history", choices=["auto", "sim", "yfinance", "none"], default="auto",
                   help="backfill for newly watched symbols (auto: sim for sim, yfinance for the Yahoo sources)")
    p.add_argument("--count", type=int, help="stop after this many ticks")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    args = p.parse_args(argv)
    shutdown = ShutdownFlag().install()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging("ingest", settings.log_level)
    serve_metrics(settings.metrics_port)
    if not args.symbols and not args.num_symbols and settings.ingest_symbols:
        args.symbols = ",".join(settings.ingest_symbols)
    source = build_source(args)
    if args.source != "csv":  # the sim shapes volume by the session, the Yahoo feeds watch for it
        from events.markethours import calendar

        calendar()  # built now (about a second), not while the first ticks wait
    demand = history = None
    if not args.fixed and args.source != "csv":
        floor = source.symbols if (args.symbols or args.num_symbols) else []  # type: ignore[attr-defined]
        demand = DemandFollower(settings, floor)
        history = history_for(args, settings, demand)
    report = run_ingest(source, EventProducer(settings), shutdown, rate=args.rate,
                        max_ticks=args.count, duration_s=args.duration, demand=demand, history=history)
    print(f"ingest: {report.produced} ticks in {report.elapsed_s:.3f} s ({report.rate:,.0f}/s), "
          f"{report.duplicates} duplicates dropped, {report.out_of_order} out of order", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
