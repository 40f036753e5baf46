"""``python -m web serve|projector|bridge|openapi``: the web app's processes."""

from __future__ import annotations

import argparse
import json
import sys

from events.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["admin"]:
        from web.admin import main as admin_main

        return admin_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m web")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="development server (production: gunicorn, see the Procfile)")
    serve.add_argument("--host", default="127.0.0.1")
    sub.add_parser("projector", help="topics -> SQL read tables (bars, predictions, alert history)")
    sub.add_parser("bridge", help="topics -> Socket.IO rooms through the Redis message queue")
    sub.add_parser("openapi", help="print the OpenAPI document")
    sub.add_parser("admin", help="operator commands (see `python -m web admin --help`)")
    args = parser.parse_args(argv)
    from events.kafka import ShutdownFlag

    # first thing for the long-running ones: a SIGTERM during start-up must stop cleanly too
    shutdown = ShutdownFlag().install() if args.cmd in ("projector", "bridge") else ShutdownFlag()
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    from events.observability import serve_metrics, setup_logging

    setup_logging(args.cmd if args.cmd in ("projector", "bridge") else "web", settings.log_level,
                  json_logs=args.cmd != "openapi")
    if args.cmd in ("projector", "bridge"):
        serve_metrics(settings.metrics_port)

    if args.cmd == "serve":
        from web import create_app
        from web.extensions import socketio

        from events.settings import refuse_weak_key_on_open_binds

        try:
            refuse_weak_key_on_open_binds(settings, [f"{args.host}:{settings.port}"])
        except SettingsError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return 2
        app = create_app({"SETTINGS": settings})
        print(f"Tickerbell web on http://{args.host}:{settings.port}/", flush=True)
        socketio.run(app, host=args.host, port=settings.port, allow_unsafe_werkzeug=True)
    elif args.cmd == "projector":
        from events.db import session_factory
        from web.projector import run_projector

        run_projector(settings, session_factory(settings), shutdown, group_id=settings.topic("tickerbell-projector"),
                      redis_prefix=f"tickerbell:{settings.kafka_topic_prefix}")
    elif args.cmd == "bridge":
        from web.bridge import run_bridge

        run_bridge(settings, shutdown, channel=settings.topic("tickerbell-socketio"),
                   group_id=settings.topic("tickerbell-bridge"), redis_prefix=f"tickerbell:{settings.kafka_topic_prefix}")
    elif args.cmd == "openapi":
        from web import create_app
        from web.openapi import document

        print(json.dumps(document(create_app({"SETTINGS": settings})), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
