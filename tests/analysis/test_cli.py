"""Tests of analysis/cli.py through a small argparse harness, as btnet-lab mounts it."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from analysis.cli import add_dashboard_parser, add_results_parser
from analysis.store import write_trial


def run(argv: list[str]) -> int:
    """Parse ``argv`` with a parser holding only our sub-commands and run the handler."""
    parser = argparse.ArgumentParser(prog="btnet-lab")
    sub = parser.add_subparsers(dest="command", required=True)
    add_results_parser(sub)
    add_dashboard_parser(sub)
    args = parser.parse_args(argv)
    return args.handler(args)


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("btnet-lab: error: ")
    return err


def test_results_list_shows_each_study(
    ablation_store: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`results list` prints one table row per study with its counts."""
    root, study = ablation_store
    assert run(["results", "list", "--store", str(root)]) == 0
    out = capsys.readouterr().out
    assert study in out and "completed" in out.splitlines()[0]


def test_results_show_ranks_variants(
    ablation_store: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`results show` of an ablation prints a heading and variants best first."""
    root, study = ablation_store
    assert run(["results", "show", study, "--store", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"study {study} (ablation): 40 trials")
    assert lines[3].startswith("deeper_insertion") and lines[-1].startswith("no_bct")


def test_results_show_compare_as_csv(
    ablation_store: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`results show --compare --format csv` gives the paired comparisons as CSV."""
    root, study = ablation_store
    assert (
        run(["results", "show", study, "--store", str(root), "--compare", "--format", "csv"]) == 0
    )
    df = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert {"variant", "metric", "mean_diff", "ci_low", "p_wilcoxon", "n"} <= set(df.columns)
    assert (df["baseline"] == "baseline").all()


def test_results_query_json_and_parquet(
    sweep_store: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`results query` writes JSON records to stdout and Parquet to a file."""
    root, _ = sweep_store
    q = "select status, count(*) n from trials group by status order by status"
    assert run(["results", "query", q, "--store", str(root), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert sum(r["n"] for r in records) == 120
    out = tmp_path / "q.parquet"
    assert (
        run(["results", "query", q, "--store", str(root), "--format", "parquet", "-o", str(out)])
        == 0
    )
    assert pd.read_parquet(out)["n"].sum() == 120


def test_store_defaults_to_the_environment(
    ablation_store: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --store the BTNET_STORE variable names the store."""
    root, study = ablation_store
    monkeypatch.setenv("BTNET_STORE", str(root))
    assert run(["results", "list"]) == 0
    assert study in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["results", "show", "nope"], "unknown study 'nope'"),
        (["results", "query", "select nope from trials"], "SQL error"),
        (["results", "list", "--format", "parquet"], "needs an output file"),
        (["dashboard", "nope"], "unknown study 'nope'"),
    ],
)
def test_user_mistakes_print_one_line_and_exit_2(
    ablation_store: tuple[Path, str],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    """Unknown study, SQL error, missing output: one line on stderr, exit status 2."""
    root, _ = ablation_store
    assert run([*argv, "--store", str(root)]) == 2
    assert message in _one_error_line(capsys)


def test_empty_and_missing_stores_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder without trials and a folder that does not exist are one-line errors."""
    assert run(["results", "list", "--store", str(tmp_path)]) == 2
    assert "holds no trials" in _one_error_line(capsys)
    assert run(["results", "list", "--store", str(tmp_path / "missing")]) == 2
    assert "no result store" in _one_error_line(capsys)


def test_newer_schema_store_exits_2(
    tmp_path: Path, make_row: Callable[..., dict], capsys: pytest.CaptureFixture[str]
) -> None:
    """A store of a newer schema version is refused with one line."""
    write_trial(tmp_path, make_row())
    (tmp_path / "_store.json").write_text('{"schema_version": 999}')
    assert run(["results", "show", "s1", "--store", str(tmp_path)]) == 2
    assert "upgrade btnet-lab" in _one_error_line(capsys)


def test_dashboard_writes_the_file(
    ablation_store: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dashboard STUDY -o FILE` writes the page and says where."""
    root, study = ablation_store
    out = tmp_path / "r.html"
    assert run(["dashboard", study, "--store", str(root), "-o", str(out)]) == 0
    assert out.stat().st_size > 1_000_000  # plotly.js is embedded
    assert str(out) in capsys.readouterr().out
