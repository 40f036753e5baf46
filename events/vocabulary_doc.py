"""The README's rule table, generated from the one vocabulary (:mod:`events.vocabulary`).

``python -m events.vocabulary_doc`` writes every series and every operator, with one example
each in the words of the alerts (``alerts.templates.describe``), into README.md between
``<!-- rules:begin -->`` and ``<!-- rules:end -->`` (nothing else in the file changes);
``--check`` only says whether the README is up to date (exit status 1 when it is not). A test
(tests/events/test_vocabulary_doc.py) fails when the table and the vocabulary drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import msgspec

from events.vocabulary import FREQUENCIES, MAX_CONDITIONS, OPERATORS, SERIES, Condition

__all__ = ["BEGIN", "END", "render", "replace_block", "main"]

BEGIN, END = "<!-- rules:begin -->", "<!-- rules:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"

#: one example condition per unit (a series' own example where the unit's reads oddly)
_BY_UNIT: dict[str, dict[str, Any]] = {
    "price": {"op": "greater_than", "value": 250.0}, "percent": {"op": "less_than", "value": -5.0},
    "volume": {"op": "greater_than", "value": 1_000_000.0}, "count": {"op": "greater_than", "value": 500.0},
    "ratio": {"op": "greater_than", "value": 3.0}, "index": {"op": "less_than", "value": 30.0},
}
_BY_SERIES: dict[str, dict[str, Any]] = {
    "sma_50": {"op": "crossing_up", "other": "sma_200"}, "ema_50": {"op": "crossing_down", "other": "ema_200"},
    "high_20d": {"series": "price", "op": "crossing_up", "other": "high_20d"},
    "low_20d": {"series": "price", "op": "crossing_down", "other": "low_20d"},
    "gap_pct": {"op": "greater_than", "value": 2.0}, "macd": {"op": "crossing_up", "value": 0.0},
    "zscore_20": {"op": "outside_channel", "lower": -3.0, "upper": 3.0},
    "forecast.lower_move_pct": {"op": "greater_than", "value": 0.0},
    "volatility_20": {"op": "greater_than", "value": 2.0}, "day_change": {"op": "less_than", "value": -5.0},
    "open_change": {"op": "greater_than", "value": 3.0}, "forecast.move_pct": {"op": "greater_than", "value": 1.0},
}
_BY_GROUP: dict[str, dict[str, Any]] = {
    "compare": {"value": 250.0}, "channel": {"lower": 240.0, "upper": 260.0},
    "move": {"value": 5.0, "window_bars": 10},
}
_SOURCE = {"tick": "every tick", "bar": "every bar", "prediction": "every forecast"}


def _words(raw: dict[str, Any]) -> str:
    from alerts.templates import describe  # the wording of the alerts themselves

    return describe(msgspec.convert(raw, Condition))


def _json(raw: dict[str, Any]) -> str:
    return msgspec.json.encode(raw).decode()


def _series_example(name: str) -> dict[str, Any]:
    return {"series": name, **_BY_SERIES.get(name, _BY_UNIT[SERIES[name].unit])}


def _op_example(name: str) -> dict[str, Any]:
    o = OPERATORS[name]
    params = dict(_BY_GROUP[o.group])
    if o.percent:
        params.update(value=2.0, window_bars=None, window_s=3600)
    return {"series": "price", "op": name, **{k: v for k, v in params.items() if v is not None}}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    """The block between the markers (without them), ending in a newline."""
    lines = ["### Series", "", "| series | unit | updated on | what it is | example | in words |",
             "|---|---|---|---|---|---|"]
    for name, s in SERIES.items():
        ex = _series_example(name)
        lines.append(f"| `{name}` | {s.unit} | {_SOURCE[s.source]} | {_cell(s.description)} | "
                     f"`{_cell(_json(ex))}` | {_cell(_words(ex))} |")
    lines += ["", "### Operators", "", "| operator | group | fires when the series ... | example | in words |",
              "|---|---|---|---|---|"]
    for name, o in OPERATORS.items():
        ex = _op_example(name)
        lines.append(f"| `{name}` | {o.group} | {_cell(o.description)} | `{_cell(_json(ex))}` | {_cell(_words(ex))} |")
    several = {"series": "price", "op": "greater_than", "value": 200.0, "match": "all",
               "more": [{"series": "rsi_14", "op": "less_than", "value": 30.0}]}
    lines += ["", "### Several conditions", "",
              f"Up to {MAX_CONDITIONS} conditions in one rule, all (`\"match\": \"all\"`) or any (`\"any\"`) of "
              "them: the first in `condition`, the others in `condition.more`, e.g.", "",
              f"`{_json(several)}`: {_words(several)}.", "",
              "### How often", "", "| frequency | meaning |", "|---|---|"]
    lines += [f"| `{name}` | {_cell(text)} |" for name, text in FREQUENCIES.items()]
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the markers replaced by ``block``; ValueError without markers."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN} ... {END} block")
    return text[:start + len(BEGIN)] + "\n" + block + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m events.vocabulary_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that README.md is up to date")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    updated = replace_block(text, render())
    if args.check:
        if updated != text:
            print(f"{args.readme}: the rule table is out of date; run python -m events.vocabulary_doc",
                  file=sys.stderr)
            return 1
        return 0
    if updated != text:
        args.readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
