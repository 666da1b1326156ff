"""bench/_common.py: BENCHMARKS.md sections, timing summaries, tables and the error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench._common import (
    SECTIONS,
    markdown_table,
    measure_interleaved,
    replace_section,
    run_cli,
    summarize,
    write_section,
)
from btnet_core.errors import ConfigError, FormatError


def _order(text: str) -> list[str]:
    return [s.name for s in sorted(SECTIONS, key=lambda s: text.find(f"<!-- bench:{s.name} -->"))]


def test_new_file_lists_every_section_in_the_issues_order(tmp_path: Path) -> None:
    """A first write creates the file with all sections (the unmeasured ones say so)."""
    out = write_section("store", "## store\n\nmeasured\n", tmp_path / "B.md")
    text = out.read_text()
    assert _order(text) == [s.name for s in SECTIONS]
    assert "measured" in text
    assert text.count("Not measured yet") == len(SECTIONS) - 1


def test_writing_one_section_keeps_the_others_and_hand_written_text(tmp_path: Path) -> None:
    """Replacing a section touches nothing outside its markers."""
    path = tmp_path / "B.md"
    write_section("model_cost", "## one\n\nfirst numbers\n", path)
    write_section("store", "## six\n\nstore numbers\n", path)
    path.write_text(path.read_text() + "\nA note written by hand.\n")
    write_section("model_cost", "## one\n\nsecond numbers\n", path)
    text = path.read_text()
    assert "second numbers" in text and "first numbers" not in text
    assert "store numbers" in text
    assert "A note written by hand." in text


def test_a_missing_section_is_inserted_in_order() -> None:
    """A file without a known section gets it between its neighbours, not at the end."""
    text = (
        "# B\n\n<!-- bench:model_cost -->\none\n<!-- /bench:model_cost -->\n\n"
        "<!-- bench:store -->\nsix\n<!-- /bench:store -->\n"
    )
    new = replace_section(text, "throughput", "two")
    assert new.index("one") < new.index("two") < new.index("six")


def test_an_unknown_section_is_appended() -> None:
    """Sections not in SECTIONS (a future benchmark) go to the end."""
    new = replace_section("# B\n\nintro\n", "extra_thing", "body")
    assert new.rstrip().endswith("<!-- /bench:extra_thing -->")
    assert new.index("intro") < new.index("body")


def test_broken_markers_raise_and_leave_the_file_untouched(tmp_path: Path) -> None:
    """An opening marker without its closing one is a FormatError; nothing is overwritten."""
    path = tmp_path / "B.md"
    broken = "# B\n<!-- bench:store -->\nhalf a section\n"
    path.write_text(broken)
    with pytest.raises(FormatError, match="bench:store"):
        write_section("store", "new", path)
    assert path.read_text() == broken


def test_output_in_a_missing_folder_is_a_config_error(tmp_path: Path) -> None:
    """--output pointing into a folder that does not exist is one clear line."""
    with pytest.raises(ConfigError, match="does not exist"):
        write_section("store", "x", tmp_path / "nope" / "B.md")


def test_summarize_gives_median_and_quartiles() -> None:
    """Median and inclusive quartiles of known values; one value is its own quartiles."""
    t = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (t.median, t.q1, t.q3, t.n) == (3.0, 2.0, 4.0, 5)
    one = summarize([7.0])
    assert (one.median, one.q1, one.q3, one.iqr) == (7.0, 7.0, 7.0, 0.0)


def test_measure_interleaved_runs_the_alternatives_round_robin() -> None:
    """Each round calls every alternative once, so load bursts hit all of them alike."""
    calls: list[str] = []
    timings = measure_interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1
    )
    assert calls == ["a", "b"] * 4
    assert timings["a"].n == 3 and timings["b"].n == 3


def test_markdown_table_right_aligns_numbers() -> None:
    """Numeric columns (numbers or number-like text) are right-aligned, text left."""
    table = markdown_table(["name", "n", "time"], [["x", 1_000, "1.5 ms"], ["y", 2, "**2.0**"]])
    lines = table.splitlines()
    assert lines[1] == "| :--- | ---: | ---: |"
    assert lines[2] == "| x | 1,000 | 1.5 ms |"


def test_run_cli_turns_a_user_error_into_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A BTNetError is one line on stderr and status 2, not a traceback."""

    def main(_argv: object) -> None:
        raise ConfigError("--sizes: 5 is too small; allowed: 10 trials or more")

    assert run_cli("bench.x", main, []) == 2
    err = capsys.readouterr().err
    assert err == "bench.x: error: --sizes: 5 is too small; allowed: 10 trials or more\n"


def test_an_existing_file_gains_the_known_sections_it_lacks(tmp_path: Path) -> None:
    """A hand-made BENCHMARKS.md without markers keeps its text and gets every section."""
    path = tmp_path / "B.md"
    path.write_text("# Our benchmarks\n\nWritten by hand.\n")
    write_section("throughput", "## two\n\nnumbers\n", path)
    text = path.read_text()
    assert text.startswith("# Our benchmarks\n\nWritten by hand.\n")
    assert _order(text) == [s.name for s in SECTIONS]
    assert "numbers" in text
