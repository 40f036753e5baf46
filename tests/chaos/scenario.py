"""The known sequence of ticks, the alerts it must fire, and the figures of one fault's row.

Each fault gets its own symbol and two rules on it, both notifying an email and a webhook channel:

- ``price crossing_up 150``, evaluated per tick by the engine;
- ``close crossing_up 150``, evaluated per bar: the Spark job is on the path (``BAR_SECONDS=1``
  and one tick per second of event time, so each tick is one bar and the bar's close is its price).

The prices go 149, 149, then (151 + i/100, 149) ``CYCLES`` times, then 149 x 3 (the last ticks move
the watermark past the last 151 bar). Each 151.0i crosses up once: ``CYCLES`` firing alerts per
rule, with a value unique within the round, so a notification names its alert by
(rule, value) whatever id it carries.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from alerts.messages import webhook_id
from events import contract
from tests.chaos.infra import CONTENT_KEY, Receipt

CYCLES = 6
SOURCE = "chaos"
MESSAGE = "chaos rule={{rule_id}} value={{value}}"
WEBHOOK_BODY = '{"text": "chaos rule={{rule_id}} value={{value}}", "id": "{{alert_id}}", "ts": {{ts_ms}}}'
KINDS = ("email", "webhook")


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
        return [contract.Tick(id=contract.tick_id(SOURCE, self.symbol, seq), ts=self.t0_ms + seq * 1000,
                              symbol=self.symbol, price=p, size=1.0, source=SOURCE, seq=seq)
                for seq, p in enumerate(prices())]

    def expected(self) -> dict[tuple[int, float], dict[str, str]]:
        """(rule, value) of every alert that must fire -> channel kind -> the notification id it carries."""
        out: dict[tuple[int, float], dict[str, str]] = {}
        for t in self.ticks():
            if t.price <= 150:
                continue
            for rule, trigger in ((self.price_rule, t.id), (self.close_rule, contract.bar_id(t.symbol, 1, t.ts))):
                alert = contract.alert_id(rule, 1, trigger, "firing")
                hook = webhook_id(alert, self.channels["webhook"])
                mail = webhook_id(alert, self.channels["email"])
                out[(rule, t.price)] = {"webhook": hook, "email": f"<{mail.replace(':', '.')}@tickerbell>"}
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
class Row:
    """The figures of one fault, counted at the receivers.

    - ``expected``: alerts the sequence must fire (2 rules x ``CYCLES``), each owed one
      notification per channel (email and webhook).
    - ``delivered``: expected alerts of which every channel received the notification carrying the
      alert's deterministic id (webhook-id / Message-ID). Must equal ``expected``.
    - ``duplicated``: (alert, channel) pairs notified under two or more different ids, or whose
      copies differ in content, plus notifications of no expected alert. Must be 0.
    - ``redelivered``: extra copies with the SAME id and content (a worker killed mid-send resends
      it; receivers deduplicate by the id, Standard Webhooks' at-least-once). Reported, allowed.
    - ``restarts``: processes that exited during the fault and were started again (as Heroku
      restarts a crashed dyno), besides the one a SIGKILL fault restarts on purpose.
    """

    fault: str
    expected: int
    delivered: int
    duplicated: int
    redelivered: int
    restarts: str = ""

    def line(self) -> str:
        return (f"{self.fault:<28} {self.expected:>8} {self.delivered:>9} {self.duplicated:>10} "
                f"{self.redelivered:>11}  {self.restarts or '-'}")


HEADER = f"{'fault':<28} {'expected':>8} {'delivered':>9} {'duplicated':>10} {'redelivered':>11}  restarted"


def count(rnd: Round, all_receipts: list[Receipt], restarts: str = "") -> Row:
    expected = rnd.expected()
    ids: dict[tuple[tuple[int, float], str], set[str]] = defaultdict(set)
    contents: dict[tuple[tuple[int, float], str], set[str]] = defaultdict(set)
    copies = 0
    for key, r in rnd.receipts(all_receipts):
        ids[(key, r.kind)].add(r.msg_id)
        contents[(key, r.kind)].add(r.content)
        copies += 1
    delivered = sum(all(want[kind] in ids.get((key, kind), set()) for kind in KINDS)
                    for key, want in expected.items())
    duplicated = sum(len(ids[pair]) > 1 or len(contents[pair]) > 1 or pair[0] not in expected for pair in ids)
    distinct = sum(len(v) for v in ids.values())
    return Row(rnd.fault, len(expected), delivered, duplicated, copies - distinct, restarts)
