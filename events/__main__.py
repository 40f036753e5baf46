"""Operator commands for the shared backbone: ``python -m events topics|migrate|status|banner``."""

from __future__ import annotations

import argparse
import sys

from events.settings import SettingsError, load_settings, redact_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m events")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("topics", help="create missing topics (idempotent)")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("status", help="topics, end offsets and consumer lag")
    sub.add_parser("banner", help="print where to look once the stack is up")
    sub.add_parser("relay", help="publish the transactional outbox to Kafka (a long-running process)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2

    if args.cmd == "topics":
        from events.kafka import ensure_topics

        from events.kafka import wait_for_coordinators

        created = ensure_topics(settings)
        print(f"topics: {len(created)} created" + (f" ({', '.join(created)})" if created else ", all present"))
        waited = wait_for_coordinators(settings)
        print(f"kafka: group and transaction coordinators ready ({waited:.1f} s)")
    elif args.cmd == "migrate":
        from events.db import upgrade

        upgrade(settings.database_url)
        print(f"database: migrated {redact_url(settings.database_url)}")
    elif args.cmd == "status":
        from events.status import print_status

        print_status(settings)
    elif args.cmd == "relay":
        from events.db import session_factory
        from events.kafka import ShutdownFlag
        from events.observability import serve_metrics, setup_logging
        from events.outbox import run_relay

        shutdown = ShutdownFlag().install()  # first: a SIGTERM once /metrics answers must stop cleanly
        setup_logging("relay", settings.log_level)
        serve_metrics(settings.metrics_port)
        run_relay(settings, session_factory(settings), shutdown)
    elif args.cmd == "banner":
        print(
            "\nTickerbell is starting (Ctrl-C stops every process).\n"
            f"  dashboard      {settings.public_url}/\n"
            f"  Kafka          {settings.kafka_bootstrap_servers}\n"
            f"  Redis          {settings.redis_url}\n"
            f"  database       {redact_url(settings.database_url)}\n"
            "  flow of events `make status` in another terminal\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
