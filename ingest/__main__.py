"""``python -m ingest``: publish ticks from a source to the ``ticks`` topic."""

from __future__ import annotations

import argparse
import sys

from events.kafka import EventProducer, ShutdownFlag
from events.observability import serve_metrics, setup_logging
from events.settings import SettingsError, load_settings
from ingest.base import Source
from ingest.runner import run_ingest


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
    source = build_source(args)
    report = run_ingest(source, EventProducer(settings), shutdown, rate=args.rate,
                        max_ticks=args.count, duration_s=args.duration)
    print(f"ingest: {report.produced} ticks in {report.elapsed_s:.3f} s ({report.rate:,.0f}/s), "
          f"{report.duplicates} duplicates dropped, {report.out_of_order} out of order", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
