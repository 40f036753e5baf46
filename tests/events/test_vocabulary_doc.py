"""The README's rule table is the generator's output (it cannot drift from the vocabulary)."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.vocabulary import OPERATORS, SERIES
from events.vocabulary_doc import BEGIN, END, README, main, render, replace_block


def test_the_readme_block_is_the_generators_output() -> None:
    text = README.read_text(encoding="utf-8")
    block = text[text.index(BEGIN) + len(BEGIN):text.index(END)]
    assert block == "\n" + render(), "run: python -m events.vocabulary_doc"


def test_every_series_and_operator_has_a_row_with_an_example() -> None:
    rows = [line for line in render().splitlines() if line.startswith("| `")]
    names = [row.split("`")[1] for row in rows]
    assert set(SERIES) <= set(names) and set(OPERATORS) <= set(names)
    assert "| `price` | price | every tick |" in render()
    assert "price crossing up 20-day high" in render()


def test_writing_touches_only_the_block_and_check_reports_drift(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{BEGIN}\nstale\n{END}\nafter\n", encoding="utf-8")
    assert main(["--check", "--readme", str(readme)]) == 1
    assert main(["--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\nbefore\n") and text.endswith(f"{END}\nafter\n") and "stale" not in text
    assert main(["--check", "--readme", str(readme)]) == 0
    with pytest.raises(ValueError, match="rules:begin"):
        replace_block("no markers", "x")
