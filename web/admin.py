"""Operator commands: ``tickerbell <command>`` (or ``python -m web admin <command>``).

create-user       an account (password from $TICKERBELL_PASSWORD, --password-file, a prompt, or generated
                  and printed once; never from the command line, which `ps` and shell history show)
topics            topics with messages and rates, consumer lag per group
rebuild           drop the projections (bars, predictions, alert history, feed status) and replay the topics into them
                  from the start or from what was written to Kafka since --since TIME (a fresh consumer
                  group; the live projector is untouched)
resend            re-send a failed or dead delivery now
create-rule       a rule for a user, checked exactly as the web form checks it (the same store function)
create-channel    a channel for a user, checked as the web checks it; the operator vouches for it (confirmed)
export-rules      every rule (or one user's) as JSON on stdout
import-rules      rules from such JSON, validated and announced through the outbox
demo              a demo account with a watchlist, an email channel and rules that fire on simulated ticks
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from events import models
from events.settings import Settings, SettingsError, load_settings

PROJECTIONS = (models.BarRecord, models.PredictionRecord, models.AlertRecord, models.FeedStatusRecord,
               models.ForecastScoreRecord)
DEMO_EMAIL = "demo@tickerbell.local"
DEMO_SYMBOLS = ("AAPL", "MSFT", "NVDA", "GOOG", "AMZN")


def create_user(sessions: sessionmaker[Session], email: str, password: str | None, admin: bool = False) -> tuple[int, str]:
    """Register a user through the web app's own rules; return (id, password used). The account is
    confirmed: the operator who makes it vouches for the address (no sign-up link is mailed)."""
    from web.store.users import register

    password = password or secrets.token_urlsafe(12)
    with sessions() as s:
        user = register(s, email, password, confirmed=True)
        if admin:
            user.is_admin = True
            s.commit()
        return user.id, password


def read_password(password_file: str | None, settings: Settings) -> str | None:
    """The new account's password: ``TICKERBELL_PASSWORD`` (read by the settings loader), else the
    file's first line, else the prompt on a terminal; None (generate one) when none of these gives one."""
    import getpass

    if settings.tickerbell_password.get():
        return settings.tickerbell_password.get()
    if password_file:
        text = sys.stdin.read() if password_file == "-" else Path(password_file).read_text()
        return text.splitlines()[0] if text.strip() else None
    if sys.stdin.isatty():
        first = getpass.getpass("Password (empty: generate one): ")
        if first and getpass.getpass("Again: ") != first:
            raise SystemExit("the passwords differ")
        return first or None
    return None


def rebuild_projections(settings: Settings, sessions: sessionmaker[Session], since_ms: int | None = None,
                        timeout_s: float = 600.0) -> int:
    """Empty the projection tables, then replay metrics/predictions/alerts into them up to the
    end offsets as of the call; return the messages read. A fresh consumer group does the
    replay, so the live projector carries on untouched."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    from events.kafka import ShutdownFlag
    from web.projector import make_runner

    group = f"tickerbell-rebuild-{uuid.uuid4().hex[:8]}"
    with sessions() as s:
        for model in PROJECTIONS:
            s.execute(delete(model))
        s.commit()
    consumer = Consumer({**settings.kafka_common(), "group.id": group, "enable.auto.commit": False})
    try:
        parts = []
        for name in ("metrics", "predictions", "alerts", "feed"):
            topic = settings.topic(name)
            parts += [TopicPartition(topic, p) for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        if since_ms is not None:  # start at the first offset at or after the time (or at the end)
            found = consumer.offsets_for_times([TopicPartition(tp.topic, tp.partition, since_ms) for tp in parts],
                                               timeout=10)
            consumer.commit(offsets=[tp if tp.offset >= 0 else TopicPartition(tp.topic, tp.partition,
                                                                              ends[(tp.topic, tp.partition)])
                                     for tp in found], asynchronous=False)
    finally:
        consumer.close()
    runner = make_runner(settings, sessions, ShutdownFlag(), group)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            runner.run_once()
            assigned = runner.consumer.assignment()
            if len(assigned) == len(parts):
                positions = {(tp.topic, tp.partition): tp.offset for tp in runner.consumer.position(assigned)}
                if all(ends[key] == 0 or positions.get(key, -1) >= ends[key] for key in ends):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"replay did not reach the end offsets within {timeout_s:.0f} s")
    finally:
        runner.close()
    return runner.stats.consumed


def resend(settings: Settings, sessions: sessionmaker[Session], delivery_id: int) -> str:
    """Make a finished-unsuccessfully delivery due now and hand it to the workers."""
    with sessions() as s:
        d = s.get(models.Delivery, delivery_id)
        if d is None:
            raise SystemExit(f"no delivery {delivery_id}")
        if d.status == "delivered":
            raise SystemExit(f"delivery {delivery_id} was delivered at {d.delivered_at}; not sending it twice")
        d.status = "pending"
        d.next_attempt_at = datetime.now(timezone.utc)
        s.commit()
    from alerts.tasks import deliver

    deliver.delay(delivery_id)
    return f"delivery {delivery_id} queued"


RULE_FIELDS = ("name", "symbol", "watchlist_id", "condition", "frequency", "cooldown_s", "pending_s", "recovery",
               "enabled", "active_from_min", "active_to_min", "timezone", "message")


def export_rules(sessions: sessionmaker[Session], user_id: int | None) -> list[dict[str, Any]]:
    with sessions() as s:
        query = select(models.Rule).order_by(models.Rule.id)
        if user_id is not None:
            query = query.where(models.Rule.user_id == user_id)
        return [{"id": r.id, "user_id": r.user_id, **{f: getattr(r, f) for f in RULE_FIELDS},
                 "channel_ids": sorted(c.id for c in r.channels)} for r in s.scalars(query)]


def import_rules(settings: Settings, sessions: sessionmaker[Session], rules: list[dict[str, Any]],
                 user_id: int) -> list[int]:
    """Create each rule for ``user_id`` with the web app's validation; all or nothing per rule."""
    from web.store.rules import create_rule

    created = []
    for data in rules:
        with sessions() as s:
            body = {k: v for k, v in data.items() if k in RULE_FIELDS or k == "channel_ids"}
            created.append(create_rule(s, settings, user_id, body).id)
    return created


def create_rule_for(settings: Settings, sessions: sessionmaker[Session], user_id: int, data: dict[str, Any]) -> str:
    """Create a rule through :func:`web.store.rules.create_rule` (every check of the form and the API);
    return a line saying what was made. Raises :class:`web.store.errors.StoreError`."""
    from web.openapi import SCHEMAS, type_errors
    from web.store.errors import Invalid
    from web.store.rules import create_rule, rule_json

    wrong = type_errors(data, SCHEMAS["Rule"])  # the API's first check of a body, then its store's
    if wrong:
        raise Invalid(wrong)
    with sessions() as s:
        rule = create_rule(s, settings, user_id, data)
        made = rule_json(s, rule)
    return f"rule {made['id']} created: {', '.join(made['symbols'])}: {made['description']}"


def with_token(data: dict[str, Any], token_file: str | None) -> dict[str, Any]:
    """``data`` with a Slack bot token read from ``token_file``'s first line (``-``: standard input);
    never from the command line, where other users of the machine can read it."""
    if not token_file:
        return data
    text = sys.stdin.read() if token_file == "-" else Path(token_file).read_text(encoding="utf-8")
    return {**data, "token": text.splitlines()[0].strip() if text.strip() else ""}


def create_channel_for(settings: Settings, sessions: sessionmaker[Session], user_id: int,
                       data: dict[str, Any], secret: str | None = None) -> str:
    """Create a channel through :func:`web.store.channels.create_channel` (the web's checks, the address
    guard included), confirmed at once: the operator vouches for the address, so no mail is sent.
    ``secret``: a webhook's own signing secret (``whsec_``...) instead of a generated one. The answer
    shows a webhook's signing secret (the operator configures the receiver with it), never a bot token
    or an Apprise URL's tokens."""
    from web.store.channels import channel_json, create_channel
    from web.store.errors import Invalid, NotFound

    if secret is not None and (data.get("kind") != "webhook" or not secret.startswith("whsec_")
                               or not 10 < len(secret) <= 200):
        raise Invalid({"secret": "a webhook signing secret: whsec_ and base64 (webhook channels only)"})
    with sessions() as s:
        if s.get(models.User, user_id) is None:
            raise NotFound(f"user {user_id}")
        channel = create_channel(s, settings, user_id, data)
        channel.confirmed_at = channel.confirmed_at or datetime.now(timezone.utc)
        if secret is not None:
            channel.secret = secret
        s.commit()
        shown = channel_json(channel)
        return f"channel {channel.id} created ({channel.kind} -> {shown['target']})" + (
            f", signing secret {channel.secret}" if channel.kind == "webhook" and channel.secret else "")


def seed_demo(settings: Settings, sessions: sessionmaker[Session]) -> str:
    """A demo account whose rules fire within a minute or two on the simulated feed (idempotent)."""
    from web.store.channels import create_channel
    from web.store.rules import create_rule
    from web.store.watchlists import add_symbol

    with sessions() as s:
        if s.scalar(select(models.User.id).where(models.User.email == DEMO_EMAIL)) is not None:
            return f"demo account {DEMO_EMAIL} exists"
    password = secrets.token_urlsafe(9)
    user_id, _ = create_user(sessions, DEMO_EMAIL, password)
    with sessions() as s:
        wl = s.scalar(select(models.Watchlist).where(models.Watchlist.user_id == user_id))
        assert wl is not None
        for sym in DEMO_SYMBOLS:
            add_symbol(s, settings, user_id, wl.id, sym)
        s.commit()
        channel = create_channel(s, settings, user_id, {"kind": "email", "name": "Demo inbox", "target": DEMO_EMAIL})
        channel.confirmed_at = datetime.now(timezone.utc)  # the operator's own demo address: nothing to prove
        s.commit()
        common = {"symbol": "AAPL", "frequency": "every_time", "cooldown_s": 60, "channel_ids": [channel.id]}
        create_rule(s, settings, user_id, {**common, "name": "AAPL jumps 0.2 % within a minute",
                                           "condition": {"series": "price", "op": "moving_up_pct", "value": 0.2,
                                                         "window_s": 60}})
        create_rule(s, settings, user_id, {**common, "name": "AAPL drops 0.2 % within a minute",
                                           "condition": {"series": "price", "op": "moving_down_pct", "value": 0.2,
                                                         "window_s": 60}})
        # crossing, not "under": a symbol that stays oversold does not mail every bar
        create_rule(s, settings, user_id, {"name": "Any watchlist symbol: RSI crosses under 30",
                                           "watchlist_id": wl.id, "frequency": "once_per_bar_close",
                                           "channel_ids": [channel.id],
                                           "condition": {"series": "rsi_14", "op": "crossing_down", "value": 30}})
    return f"demo account: {DEMO_EMAIL} / {password}  (mail lands in {settings.var_dir / 'mail'})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickerbell", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("create-user", help="an account; the password from $TICKERBELL_PASSWORD, --password-file, "
                                           "the prompt (on a terminal), else generated and printed once")
    p.add_argument("email")
    p.add_argument("--password-file", help="read the password from this file's first line ('-': standard input)")
    p.add_argument("--password", help=argparse.SUPPRESS)  # refused with an explanation, see read_password
    p.add_argument("--admin", action="store_true")
    sub.add_parser("topics")
    p = sub.add_parser("rebuild", help="replay topics into freshly emptied projection tables")
    p.add_argument("--since", help="replay messages written to Kafka at or after this ISO time or epoch ms "
                                   "(default: from the start of each topic)")
    p = sub.add_parser("resend")
    p.add_argument("delivery_id", type=int)
    p = sub.add_parser("create-rule", help="a rule, with the web's checks")
    p.add_argument("--user-id", type=int, required=True)
    p.add_argument("--rule", required=True, help='the rule as the API takes it, JSON: {"symbol": "AAPL", '
                                                 '"condition": {"series": "price", "op": "greater_than", "value": 200}}')
    p.add_argument("--notify-on-resolve", action="store_true", default=None,
                   help="also tell the channels when the alert resolves (sets notify_on_resolve in --rule)")
    p.add_argument("--repeat-interval-s", type=int,
                   help="remind every this many seconds while it stays firing (sets repeat_interval_s in --rule)")
    p = sub.add_parser("create-channel", help="a channel, with the web's checks; confirmed by the operator")
    p.add_argument("--user-id", type=int, required=True)
    p.add_argument("kind", help="email, slack, slack_bot, webhook or apprise")
    p.add_argument("target", help="the address, URL, Apprise URL or Slack channel")
    p.add_argument("--name", help="default: the kind")
    p.add_argument("--token-file", help="slack_bot: a file whose first line is the bot token (xoxb-...), - for stdin")
    p = sub.add_parser("export-rules")
    p.add_argument("--user-id", type=int)
    p = sub.add_parser("import-rules")
    p.add_argument("file", help="JSON from export-rules ('-' for stdin)")
    p.add_argument("--user-id", type=int, required=True)
    sub.add_parser("demo")
    sub.add_parser("republish-rules", help="queue every rule's event again (a new or wiped Kafka cluster); "
                                           "the relay also does this by itself when `rules` is empty")
    args = parser.parse_args(argv)
    if getattr(args, "password", None) is not None:
        print("error: --password is not accepted: a password on the command line shows in `ps` and in shell "
              "history. Use $TICKERBELL_PASSWORD, --password-file FILE (or - for standard input), or answer "
              "the prompt.", file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    from events.db import session_factory
    from web.store.errors import StoreError

    sessions = session_factory(settings)
    try:
        if args.cmd == "create-user":
            given = read_password(args.password_file, settings)
            user_id, password = create_user(sessions, args.email, given, args.admin)
            shown = "" if given else f" with password {password}"
            print(f"user {user_id} {args.email} created{shown}")
        elif args.cmd == "topics":
            from events.status import print_status

            print_status(settings)
        elif args.cmd == "rebuild":
            since = None
            if args.since:
                from ingest.csvsource import parse_time_ms

                since = parse_time_ms(args.since)
            n = rebuild_projections(settings, sessions, since)
            print(f"projections rebuilt from {n} messages")
        elif args.cmd == "resend":
            print(resend(settings, sessions, args.delivery_id))
        elif args.cmd == "create-rule":
            try:
                data = json.loads(args.rule)
            except json.JSONDecodeError as exc:
                print(f"error: --rule is not JSON: {exc}", file=sys.stderr)
                return 2
            flags = {"notify_on_resolve": args.notify_on_resolve, "repeat_interval_s": args.repeat_interval_s}
            if isinstance(data, dict):
                data.update({k: v for k, v in flags.items() if v is not None})
            print(create_rule_for(settings, sessions, args.user_id, data))
        elif args.cmd == "create-channel":
            data = {"kind": args.kind, "target": args.target, "name": args.name or args.kind}
            print(create_channel_for(settings, sessions, args.user_id, with_token(data, args.token_file)))
        elif args.cmd == "export-rules":
            json.dump(export_rules(sessions, args.user_id), sys.stdout, indent=2, default=str)
            print()
        elif args.cmd == "import-rules":
            text = sys.stdin.read() if args.file == "-" else open(args.file).read()
            ids = import_rules(settings, sessions, json.loads(text), args.user_id)
            print(f"imported {len(ids)} rules: {ids}")
        elif args.cmd == "demo":
            print(seed_demo(settings, sessions))
        elif args.cmd == "republish-rules":
            from events.outbox import announce_all_rules

            with sessions() as s:
                n = announce_all_rules(s, settings)
                s.commit()
            print(f"{n} rules queued in the outbox; the relay publishes them")
    except StoreError as exc:
        others = "; ".join(f"{k}: {v}" for k, v in exc.fields.items() if v not in exc.message)
        print(f"error: {exc.message}" + (f" ({others})" if others else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
