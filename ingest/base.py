"""What every source yields, and the sequencer that turns it into ``Tick`` events.

A source yields :class:`RawTick` values (symbol, event time, price, size). The
:class:`Sequencer` gives each a per-(source, symbol) sequence number and
applies the ordering policy in one place for every source:

* an exact repeat of the previous tick of that symbol (same time, price and
  size) is a duplicate: dropped and counted;
* a tick older than the newest seen for its symbol is out of order: passed on
  with its own event time (the stream job's watermark decides whether it
  is too late for its bar) and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

from events.contract import Tick
from events.contract_ids import tick_id


Session = Literal["pre", "regular", "post"]


class RawTick(NamedTuple):
    symbol: str
    ts_ms: int
    price: float
    size: float
    session: Session | None = None  # where the source knows it


class Source(Protocol):
    """A tick source. ``next_batch`` may block briefly; it returns ``None`` when exhausted."""

    name: str
    #: whether an exact repeat of a symbol's previous tick is a duplicate to drop
    #: (true for replays and polled feeds; a generator never repeats itself)
    dedupe: bool

    def next_batch(self, max_ticks: int) -> list[RawTick] | None: ...


class FollowingSource(Source, Protocol):
    """A source whose symbol set follows demand (the ``watched`` topic plus an operator floor).

    ``follow`` is called from the ingest loop's thread with the whole wanted set each time it
    changes (never concurrently with ``next_batch``); the source starts producing for symbols
    new to the set (subscribe) and stops for those no longer in it (unsubscribe). It must not
    block for long: network work happens in the source's own thread or on the next poll.
    """

    def follow(self, symbols: frozenset[str]) -> None: ...


@dataclass
class SequencerStats:
    emitted: int = 0
    duplicates: int = 0
    out_of_order: int = 0


@dataclass
class Sequencer:
    source: str
    dedupe: bool = True
    _last: dict[str, RawTick] = field(default_factory=dict)
    _seq: dict[str, int] = field(default_factory=dict)
    stats: SequencerStats = field(default_factory=SequencerStats)

    def to_event(self, raw: RawTick) -> Tick | None:
        """The tick event for ``raw``, or None when it is a duplicate."""
        prev = self._last.get(raw.symbol)
        if prev is not None:
            if self.dedupe and prev == raw:
                self.stats.duplicates += 1
                return None
            if raw.ts_ms < prev.ts_ms:
                self.stats.out_of_order += 1
            else:
                self._last[raw.symbol] = raw
        else:
            self._last[raw.symbol] = raw
        seq = self._seq.get(raw.symbol, 0) + 1
        self._seq[raw.symbol] = seq
        self.stats.emitted += 1
        return Tick(
            id=tick_id(self.source, raw.symbol, seq), ts=raw.ts_ms, symbol=raw.symbol,
            price=raw.price, size=raw.size, source=self.source, seq=seq, session=raw.session,
        )
