"""``python -m alerts engine|dispatch|worker|rules|channels|preview|smtp-sink``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from alerts.config import EngineSettings, load_engine_settings
from alerts.retry import load_notify_config
from events.settings import Settings, SettingsError, load_settings


def _logging(settings: Settings, process: str | None = None) -> None:
    """Long-running processes (named) log JSON lines and serve /metrics; CLI commands log plain text."""
    from events.observability import serve_metrics, setup_logging

    setup_logging(process or "alerts", settings.log_level, json_logs=process is not None)
    if process is not None:
        serve_metrics(settings.metrics_port)


def _hours(text: str) -> tuple[int, int]:
    try:
        start, end = text.split("-")
        to_min = [int(h) * 60 + int(m) for h, m in (p.split(":") for p in (start, end))]
    except ValueError:
        raise argparse.ArgumentTypeError("active hours look like 09:30-16:00") from None
    return to_min[0], to_min[1]


def _parser(engine: EngineSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m alerts")
    sub = parser.add_subparsers(dest="cmd", required=True)
    eng = sub.add_parser("engine", help="the rule engine: ticks/metrics/predictions/rules -> alerts")
    eng.add_argument("--stale-after-s", type=int, default=engine.stale_after_s,
                     help="system alert when a watched symbol has no tick for this long in market hours (0: off; "
                          "ALERTS_STALE_AFTER_S)")
    eng.add_argument("--transactional-id", default=engine.engine_transactional_id,
                     help="this instance's transactional.id and static group member id (ALERTS_TRANSACTIONAL_ID; "
                          "default from $DYNO)")
    eng.add_argument("--group", default=engine.engine_group, help="consumer group (ALERTS_ENGINE_GROUP)")
    eng.add_argument("--transaction-interval-ms", type=int, default=engine.transaction_interval_ms,
                     help="the shortest time between two transactions below a full batch "
                          "(ALERTS_TRANSACTION_INTERVAL_MS)")
    disp = sub.add_parser("dispatch", help="alerts -> delivery rows -> Celery tasks")
    disp.add_argument("--group", default=engine.dispatch_group, help="consumer group (ALERTS_DISPATCH_GROUP)")
    wk = sub.add_parser("worker", help="the Celery worker (with the beat sweep of due retries)")
    wk.add_argument("--concurrency", type=int, default=4)
    wk.add_argument("--no-beat", action="store_true")

    rules = sub.add_parser("rules", help="create, list or delete alert rules")
    rsub = rules.add_subparsers(dest="rules_cmd", required=True)
    rc = rsub.add_parser("create")
    rc.add_argument("--user-id", type=int, required=True)
    target = rc.add_mutually_exclusive_group(required=True)
    target.add_argument("--symbol")
    target.add_argument("--watchlist-id", type=int)
    rc.add_argument("--condition", help='JSON, e.g. {"series":"price","op":"crossing_up","value":150}')
    rc.add_argument("--series", default="price")
    rc.add_argument("--op")
    rc.add_argument("--value", type=float)
    rc.add_argument("--other")
    rc.add_argument("--lower", type=float)
    rc.add_argument("--upper", type=float)
    rc.add_argument("--window-bars", type=int)
    rc.add_argument("--window-s", type=int)
    rc.add_argument("--name", default="")
    rc.add_argument("--message", default="")
    rc.add_argument("--frequency", default="once_per_bar",
                    choices=["once", "once_per_bar", "once_per_bar_close", "every_time"])
    rc.add_argument("--cooldown-s", type=int, default=0)
    rc.add_argument("--pending-s", type=int, default=0)
    rc.add_argument("--recovery", type=float)
    rc.add_argument("--expires", help="ISO time, UTC unless an offset is given")
    rc.add_argument("--active-hours", type=_hours, help="HH:MM-HH:MM in --timezone")
    rc.add_argument("--timezone", default="America/New_York")
    rc.add_argument("--channel", type=int, action="append", default=[], help="channel id (repeatable)")
    rc.add_argument("--notify-on-resolve", action="store_true", default=None,
                    help="also tell the channels when the alert resolves (the all-clear)")
    rc.add_argument("--repeat-interval-s", type=int, help="remind every this many seconds while it stays firing")
    rl = rsub.add_parser("list")
    rl.add_argument("--user-id", type=int)
    rd = rsub.add_parser("delete")
    rd.add_argument("rule_id", type=int)

    ch = sub.add_parser("channels", help="create, list or test notification channels")
    csub = ch.add_subparsers(dest="channels_cmd", required=True)
    cc = csub.add_parser("create")
    cc.add_argument("--user-id", type=int, required=True)
    cc.add_argument("--kind", choices=["email", "slack", "slack_bot", "webhook", "apprise"], required=True)
    cc.add_argument("--target", required=True, help="email address, URL, Apprise URL or Slack channel")
    cc.add_argument("--name", default="")
    cc.add_argument("--secret", help="webhook signing secret (whsec_...); generated when omitted")
    cc.add_argument("--token-file", help="slack_bot: a file whose first line is the bot token (xoxb-...), - for stdin")
    cl = csub.add_parser("list")
    cl.add_argument("--user-id", type=int)
    ct = csub.add_parser("test")
    ct.add_argument("channel_id", type=int)

    pv = sub.add_parser("preview", help="when would a rule have fired over the stored history?")
    pv.add_argument("rule_id", type=int)
    pv.add_argument("--days", type=int, default=30)
    pv.add_argument("--json", action="store_true")
    sk = sub.add_parser("smtp-sink", help="a local SMTP server storing every message under var/mail")
    sk.add_argument("--folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # every section at once, before anything starts: a bad variable stops the process with one line
        settings = load_settings()
        engine = load_engine_settings()
        notify = load_notify_config()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    args = _parser(engine).parse_args(argv)
    args.notify = notify
    if args.cmd in ("engine", "dispatch", "smtp-sink"):
        from events.kafka import ShutdownFlag

        # first thing: a SIGTERM that arrives while the heavy imports run must stop cleanly too
        args.shutdown = ShutdownFlag().install()
    handler = {"engine": _engine, "dispatch": _dispatch, "worker": _worker, "rules": _rules,
               "channels": _channels, "preview": _preview, "smtp-sink": _smtp_sink}[args.cmd]
    return handler(settings, args)


def _engine(settings: Settings, args: Any) -> int:
    from confluent_kafka import KafkaException

    from alerts.engine import EngineRunner
    from events.kafka import Backoff

    _logging(settings, "alerts")
    log = logging.getLogger("alerts")
    backoff = Backoff(first_s=1.0, max_s=30.0)
    while True:
        runner = EngineRunner(settings, shutdown=args.shutdown, group_id=args.group,
                              transactional_id=args.transactional_id, stale_after_s=args.stale_after_s,
                              transaction_interval_s=args.transaction_interval_ms / 1000)
        try:
            stats = runner.run()
        except (KafkaException, TimeoutError) as exc:
            # the broker was away long enough to fence this producer or drop the group session: an
            # open transaction is lost anyway, so start over exactly as a restarted process would
            # (the new producer aborts it; state and positions come back from the last commit)
            if runner.stats.transactions:
                backoff.succeeded()  # it had been working: this is a new outage, not the same one
            delay = backoff.failed()
            log.error("engine lost its Kafka session (%s); starting over from the last commit in %.1f s",
                      exc, delay)
            args.shutdown.wait(delay)
            if args.shutdown.is_set():
                return 0
            continue
        log.info("engine stopped: %s", stats)
        return 0


def _dispatch(settings: Settings, args: Any) -> int:
    from alerts.dispatch import Dispatcher, celery_enqueue
    from events.db import session_factory

    _logging(settings, "dispatch")
    config = args.notify
    Dispatcher(settings, session_factory(settings), celery_enqueue(settings, config.queue),
               shutdown=args.shutdown, group_id=args.group,
               digest_window_s=config.digest_window_s if config.digest else 0.0).run()
    return 0


def _worker(settings: Settings, args: Any) -> int:
    import signal

    from alerts.celery_app import create_celery

    # until Celery installs its own handlers (warm shutdown), a SIGTERM ends start-up cleanly
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _logging(settings, "worker")
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    app = create_celery(settings, args.notify)
    queue = args.notify.queue
    argv = ["worker", "-Q", queue, "-P", "threads", "-c", str(args.concurrency),
            "-l", settings.log_level, "--without-gossip", "--without-mingle", "-n", f"alerts-{queue}@%h"]
    if not args.no_beat:
        argv.append("-B")
    app.worker_main(argv)
    return 0


def _rules(settings: Settings, args: Any) -> int:
    from alerts.rules import RuleError, create_rule, describe, list_rules, remove_rule, utc_from_iso
    from events.db import session_factory

    sessions = session_factory(settings)
    with sessions() as session:
        try:
            if args.rules_cmd == "create":
                if args.condition:
                    try:
                        condition = json.loads(args.condition)
                    except json.JSONDecodeError as exc:
                        raise RuleError(f"--condition is not JSON: {exc}") from None
                else:
                    if not args.op:
                        raise RuleError("give --condition JSON or --op (with --series, --value ...)")
                    condition = {k: v for k, v in {
                        "series": args.series, "op": args.op, "value": args.value, "other": args.other,
                        "lower": args.lower, "upper": args.upper, "window_bars": args.window_bars,
                        "window_s": args.window_s}.items() if v is not None}
                hours = args.active_hours or (None, None)
                event = create_rule(
                    session, settings, user_id=args.user_id, condition=condition, symbol=args.symbol,
                    watchlist_id=args.watchlist_id, channel_ids=args.channel, name=args.name,
                    message=args.message, frequency=args.frequency, cooldown_s=args.cooldown_s,
                    pending_s=args.pending_s, recovery=args.recovery,
                    expires_at=utc_from_iso(args.expires) if args.expires else None,
                    active_from_min=hours[0], active_to_min=hours[1], timezone=args.timezone,
                    notify_on_resolve=args.notify_on_resolve, repeat_interval_s=args.repeat_interval_s)
                print(f"rule {event.rule_id} v{event.version} created: {', '.join(event.symbols)}: {describe(event)}")
            elif args.rules_cmd == "list":
                for r in list_rules(session, args.user_id):
                    flags = "" if r.enabled else " (disabled)"
                    print(f"{r.rule_id:>6} v{r.version:<3} user {r.user_id:<4} {','.join(r.symbols)[:30]:<30} "
                          f"{describe(r)} [{r.frequency}] channels={r.channel_ids}{flags}")
            else:
                remove_rule(session, settings, args.rule_id)
                print(f"rule {args.rule_id} deleted")
        except (RuleError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def _channels(settings: Settings, args: Any) -> int:
    from sqlalchemy import select

    from events import models
    from events.db import session_factory

    sessions = session_factory(settings)
    if args.channels_cmd == "create":
        # the web's checks and the address guard, through the operator CLI's store path
        from web.admin import create_channel_for, with_token
        from web.store.errors import StoreError

        data = {"kind": args.kind, "name": args.name or args.kind, "target": args.target}
        try:
            print(create_channel_for(settings, sessions, args.user_id, with_token(data, args.token_file),
                                     secret=args.secret))
        except StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    from web.store.channels import display_url

    with sessions() as session:
        if args.channels_cmd == "list":
            query = select(models.Channel).order_by(models.Channel.id)
            if args.user_id is not None:
                query = query.where(models.Channel.user_id == args.user_id)
            for c in session.scalars(query):
                state = "enabled" if c.enabled else f"disabled ({c.disabled_reason})"
                target = display_url(c.target) if c.kind == "apprise" else c.target
                print(f"{c.id:>6} user {c.user_id:<4} {c.kind:<9} {target} {state}")
        else:
            from alerts.notify import test_send

            result = test_send(session, args.channel_id, settings)
            print(json.dumps(result))
            return 0 if result["ok"] else 1
    return 0


def _preview(settings: Settings, args: Any) -> int:
    from alerts.preview import preview_rule
    from alerts.rules import list_rules
    from alerts.templates import iso_time
    from events.db import session_factory

    with session_factory(settings)() as session:
        rule = next((r for r in list_rules(session) if r.rule_id == args.rule_id), None)
        if rule is None:
            print(f"error: no rule {args.rule_id}", file=sys.stderr)
            return 2
        firings = preview_rule(session, rule, args.days)
    if args.json:
        print(json.dumps(firings, indent=1))
        return 0
    for f in firings:
        print(f"{iso_time(f['ts_ms'])}  {f['symbol']:<8} {f['state']:<9} value {f['value']:<12.6g} "
              f"threshold {f['threshold'] if f['threshold'] is not None else '-'}")
    fired = sum(1 for f in firings if f["state"] == "firing")
    print(f"{fired} firings in the last {args.days} days")
    return 0


def _smtp_sink(settings: Settings, args: Any) -> int:
    from pathlib import Path
    from urllib.parse import urlsplit

    from alerts.smtp_sink import start_sink

    _logging(settings, "mail")
    url = urlsplit(settings.smtp_url.get())
    folder = Path(args.folder) if args.folder else settings.var_dir / "mail"
    controller = start_sink(folder, url.hostname or "127.0.0.1", url.port or 2525)
    logging.getLogger("alerts").info("SMTP sink on %s:%s storing mail in %s", controller.hostname,
                                     controller.port, folder)
    flag = args.shutdown
    while not flag.wait(1.0):
        pass
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
