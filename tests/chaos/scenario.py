"""The known sequence of ticks, the notifications it owes, and the figures of one fault's row.

Each fault gets its own symbol and two rules on it, both notifying an email and a webhook channel:

- ``price crossing_up 150``, evaluated per tick by the engine;
- ``close crossing_up 150``, evaluated per bar: the Spark job is on the path (``BAR_SECONDS=1``
  and one tick per second of event time, so each tick is one bar and the bar's close is its price).

The prices go 149, 149, then (151 + i/100, 149) ``CYCLES`` times, then 149 x 3 (the last ticks move
the watermark past the last 151 bar). Each 151.0i crosses up once: ``CYCLES`` firing alerts per
rule, with a value unique within the round, so a notification names its alert by
(rule, value) whatever id it carries. Every alert owes one notification per channel.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from email.message import EmailMessage

from alerts.messages import identify, webhook_id
from events import contract
from events.contract_ids import alert_id, bar_id, tick_id
from tests.chaos.infra import CONTENT_KEY, Receipt

PUBLIC_URL = "http://tb.chaos"  # the stack's PUBLIC_URL (conftest.ENV): it names the Message-ID's domain


def email_id(alert: str, channel: int) -> str:
    """The Message-ID the worker gives the (alert, email channel) delivery, made as the worker makes it."""
    return str(identify(EmailMessage(), webhook_id(alert, channel), PUBLIC_URL)["Message-ID"])

CYCLES = 12
SOURCE = "chaos"
MESSAGE = "chaos rule={{rule_id}} value={{value}}"
WEBHOOK_BODY = '{"text": "chaos rule={{rule_id}} value={{value}}", "id": "{{alert_id}}", "ts": {{ts_ms}}}'
KINDS = ("email", "webhook")
Key = tuple[tuple[int, float], str]   # ((rule, value), channel kind)


def prices() -> list[float]:
    out = [149.0, 149.0]
    for i in range(CYCLES):
        out += [round(151 + (i + 1) / 100, 2), 149.0]
    return out + [149.0, 149.0, 149.0]


@dataclass(frozen=True)
class Round:
    """One fault's share of the sequence: ticks ``first_second..`` of the session's event clock."""

    fault: str
    symbol: str
    price_rule: int
    close_rule: int
    channels: dict[str, int]   # kind -> channel id
    t0_ms: int                 # event time of this round's first tick (a whole second)

    def ticks(self) -> list[contract.Tick]:
        return [contract.Tick(id=tick_id(SOURCE, self.symbol, seq), ts=self.t0_ms + seq * 1000,
                              symbol=self.symbol, price=p, size=1.0, source=SOURCE, seq=seq)
                for seq, p in enumerate(prices())]

    def alerts(self) -> dict[tuple[int, float], str]:
        """(rule, value) of every alert that must fire -> its deterministic alert id."""
        out: dict[tuple[int, float], str] = {}
        for t in self.ticks():
            if t.price <= 150:
                continue
            for rule, trigger in ((self.price_rule, t.id), (self.close_rule, bar_id(t.symbol, 1, t.ts))):
                out[(rule, t.price)] = alert_id(rule, 1, trigger, "firing")
        return out

    def expected(self) -> dict[tuple[int, float], dict[str, str]]:
        """(rule, value) of every alert that must fire -> channel kind -> the notification id it carries."""
        out: dict[tuple[int, float], dict[str, str]] = {}
        for key, alert in self.alerts().items():
            hook = webhook_id(alert, self.channels["webhook"])
            out[key] = {"webhook": hook, "email": email_id(alert, self.channels["email"])}
        return out

    def receipts(self, all_receipts: list[Receipt]) -> list[tuple[tuple[int, float], Receipt]]:
        """This round's receipts, each with the (rule, value) its content names."""
        mine = {self.price_rule, self.close_rule}
        out = []
        for r in all_receipts:
            m = CONTENT_KEY.search(r.content)
            if m and int(m.group(1)) in mine:
                out.append(((int(m.group(1)), round(float(m.group(2)), 2)), r))
        return out


@dataclass(frozen=True)
class Tally:
    """Notifications counted by id.

    - ``owed``: notifications the sequence owes (alerts x channels);
    - ``received``: owed notifications that arrived under the id they must carry;
    - ``lost``: owed - received;
    - ``duplicated``: (alert, channel) pairs that arrived under two or more ids or with two
      contents, plus notifications of no owed alert;
    - ``copies``: extra copies under the SAME id and content (a sender killed mid-send sends again;
      receivers deduplicate by the id, Standard Webhooks' at-least-once). Reported, allowed;
    - ``before`` / ``after``: owed notifications whose first copy arrived before / after the fault.
    """

    owed: int
    received: int
    lost: int
    duplicated: int
    copies: int
    before: int = 0
    after: int = 0


def tally(owed: dict[Key, str], got: list[tuple[Key, str, str, float]], fault_at: float | None = None) -> Tally:
    """``owed``: key -> the id it must carry; ``got``: (key, id, content, arrival time) received."""
    ids: dict[Key, set[str]] = defaultdict(set)
    contents: dict[Key, set[str]] = defaultdict(set)
    first: dict[Key, float] = {}
    copies = 0
    for key, msg_id, content, at in got:
        ids[key].add(msg_id)
        contents[key].add(content)
        copies += 1
        if owed.get(key) == msg_id:
            first[key] = min(first.get(key, at), at)
    received = sum(owed[k] in ids.get(k, set()) for k in owed)
    duplicated = sum(len(ids[k]) > 1 or len(contents[k]) > 1 or k not in owed for k in ids)
    distinct = sum(len(v) for v in ids.values())
    before = sum(at < fault_at for at in first.values()) if fault_at is not None else 0
    after = len(first) - before if fault_at is not None else 0
    return Tally(len(owed), received, len(owed) - received, duplicated, copies - distinct, before, after)


def owed_notifications(rnd: Round) -> dict[Key, str]:
    return {(key, kind): ids[kind] for key, ids in rnd.expected().items() for kind in KINDS}


def count(rnd: Round, all_receipts: list[Receipt], fault_at: float | None = None) -> Tally:
    """The round's notifications at the SMTP server and the webhook receiver."""
    got = [((key, r.kind), r.msg_id, r.content, r.at) for key, r in rnd.receipts(all_receipts)]
    return tally(owed_notifications(rnd), got, fault_at)


def count_live(rnd: Round, events: list[tuple[dict[str, Any], float]], fault_at: float | None = None) -> Tally:
    """The round's live firing ``alert`` events at a Socket.IO client, by alert id (one owed per alert)."""
    owed: dict[Key, str] = {(key, "live"): alert for key, alert in rnd.alerts().items()}
    by_id = {alert: key for key, alert in rnd.alerts().items()}
    mine = {rnd.price_rule, rnd.close_rule}
    got = []
    for payload, at in events:
        if payload.get("rule_id") not in mine or payload.get("state", "firing") != "firing":
            continue  # a resolved alert owes no notification
        key = by_id.get(str(payload.get("id")), (int(payload["rule_id"]), -1.0))  # an unknown id: a stray
        got.append(((key, "live"), str(payload.get("id")), str(payload.get("value")), at))
    return tally(owed, got, fault_at)


def count_all(owed: dict[Key, str], all_receipts: list[Receipt]) -> Tally:
    """The whole history: every notification owed by every round and soak run so far, against
    every notification received (one of nothing owed counts as duplicated)."""
    got = []
    for r in all_receipts:
        m = CONTENT_KEY.search(r.content)
        key = ((int(m.group(1)), round(float(m.group(2)), 2)), r.kind) if m else ((0, 0.0), r.kind)
        got.append((key, r.msg_id, r.content, r.at))
    return tally(owed, got)


@dataclass(frozen=True)
class Row:
    """One fault's line of the results file: what was struck, when, the proof that it was struck
    in the middle of its work, and the notifications counted where ``counted_at`` says."""

    fault: str
    target: str
    moment: str
    busy: str          # what the target held when it was struck (observed from outside)
    counted_at: str    # "receivers" (SMTP + webhook) or "Socket.IO client"
    owed: int
    received: int
    lost: int
    duplicated: int
    copies: int
    before: int        # owed notifications that arrived before the fault
    after: int         # ... and after it
    restarts: str = ""

    @classmethod
    def of(cls, fault: str, target: str, moment: str, busy: str, counted_at: str, t: Tally,
           restarts: str = "") -> "Row":
        return cls(fault, target, moment, busy, counted_at, t.owed, t.received, t.lost, t.duplicated, t.copies,
                   t.before, t.after, restarts)

    def doc(self) -> dict[str, Any]:
        return asdict(self)
