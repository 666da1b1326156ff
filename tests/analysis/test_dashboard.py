"""Tests of analysis/dashboard.py: the report, the page's safety, and the page in Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analysis.dashboard import build_report, write_dashboard
from analysis.store import write_trials
from analysis.synthetic_store import ablation_rows

HOSTILE_VARIANT = '<img src=x onerror="window.__pwned=1">'
HOSTILE_ERROR = "<script>window.__pwned=2</script> & more"
HOSTILE_STUDY = "abl </script><script>window.__pwned=3</script>"


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A small ablation whose study name, a variant and an error message are HTML."""
    root = tmp_path_factory.mktemp("hostile")
    rows, curves = ablation_rows(15, seed=2, study=HOSTILE_STUDY, failure_rate=0.0)
    renamed = {}
    for row in rows:
        if row["variant"] == "no_bct":
            old = row["trial_id"]
            row["variant"] = HOSTILE_VARIANT
            row["trial_id"] = f"{HOSTILE_VARIANT}-s{row['seed']}"
            renamed[old] = row["trial_id"]
    rows[-1].update(status="error", error=HOSTILE_ERROR)
    for c in curves:
        c["trial_id"] = renamed.get(c["trial_id"], c["trial_id"])
    failed = rows[-1]["trial_id"]
    for key in [k for k in rows[-1] if k.startswith(("final_", "best_"))]:
        rows[-1][key] = None
    write_trials(root, rows, [c for c in curves if c["trial_id"] != failed])
    return root, HOSTILE_STUDY


@pytest.fixture(scope="module")
def hostile_page(
    hostile_store: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The written dashboard of the hostile store."""
    root, study = hostile_store
    return write_dashboard(root, study, tmp_path_factory.mktemp("page") / "report.html")


def test_ablation_report_has_its_figures(hostile_store: tuple[Path, str]) -> None:
    """An ablation gets every figure but importance (which is for sweeps, and says so)."""
    root, study = hostile_store
    report = build_report(root, study)
    drawn = {s.id for s in report.sections if s.figure is not None}
    assert drawn == {"forest", "resolution", "matrix", "progress", "parcoords", "curves", "pareto"}
    note = next(s.note for s in report.sections if s.id == "importance")
    assert "sweeps" in note


def test_sweep_report_has_importance(sweep_store: tuple[Path, str]) -> None:
    """A sweep gets importance and no forest plot (which says why)."""
    root, study = sweep_store
    report = build_report(root, study)
    drawn = {s.id for s in report.sections if s.figure is not None}
    assert {"importance", "parcoords", "curves", "pareto", "matrix"} <= drawn
    assert "forest" not in drawn


def test_page_needs_no_network(hostile_page: Path) -> None:
    """No script, stylesheet or image is loaded from anywhere: plotly.js is inline."""
    text = hostile_page.read_text()
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", text)
    assert "Plotly" in text and len(text) > 3_000_000


def test_user_strings_are_not_markup_in_the_file(hostile_page: Path) -> None:
    """The hostile strings appear only escaped: no tag they contain reaches the HTML."""
    text = hostile_page.read_text()
    assert "<img src=x" not in text
    assert "<script>window.__pwned" not in text
    assert "</script><script>window" not in text
    assert text.count("</script>") == text.count("<script")


# -- in the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(
    browser_context: Any, hostile_page: Path
) -> Iterator[tuple[Any, list[tuple[str, str]]]]:
    """The page opened in headless Chromium, with the console messages it produced."""
    page = browser_context.new_page()
    messages: list[tuple[str, str]] = []
    page.on("console", lambda m: messages.append((m.type, m.text)))
    page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
    page.on("request", lambda r: messages.append(("request", r.url)))
    page.goto(hostile_page.as_uri())
    page.wait_for_function("document.querySelectorAll('#sections .plot .main-svg').length >= 7")
    yield page, messages
    page.close()


@pytest.mark.browser
def test_no_console_errors(loaded: tuple[Any, list[tuple[str, str]]]) -> None:
    """Opening the page logs no error and raises no exception."""
    _, messages = loaded
    assert [m for m in messages if m[0] in ("error", "pageerror")] == []


@pytest.mark.browser
def test_nothing_is_fetched(loaded: tuple[Any, list[tuple[str, str]]]) -> None:
    """The page requests nothing but itself: it works offline."""
    _, messages = loaded
    urls = [url for kind, url in messages if kind == "request"]
    assert urls and all(u.startswith(("file://", "data:", "blob:")) for u in urls), urls


@pytest.mark.browser
def test_every_figure_is_rendered(loaded: tuple[Any, list[tuple[str, str]]]) -> None:
    """Every section with a figure has a drawn Plotly plot; the others show their note."""
    page, _ = loaded
    state = page.evaluate(
        """() => Array.from(document.querySelectorAll('#sections .plot')).map(d => [
            d.id, d.style.display !== 'none', !!d.querySelector('.main-svg')])"""
    )
    shown = {fid for fid, visible, _ in state if visible}
    assert shown == {
        "fig-forest",
        "fig-resolution",
        "fig-matrix",
        "fig-progress",
        "fig-parcoords",
        "fig-curves",
        "fig-pareto",
    }
    assert all(drawn for _, visible, drawn in state if visible)
    assert page.locator("#note-importance").inner_text().startswith("Parameter importance")


@pytest.mark.browser
def test_hover_shows_a_point(loaded: tuple[Any, list[tuple[str, str]]]) -> None:
    """Moving the mouse onto a point of the progress plot shows its hover label."""
    page, _ = loaded
    page.locator("#fig-progress").scroll_into_view_if_needed()
    point = page.locator("#fig-progress .scatterlayer .point").first
    box = point.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 8, y)
    page.mouse.move(x, y, steps=4)
    page.wait_for_selector("#fig-progress .hoverlayer .hovertext", timeout=5000)
    label = page.locator("#fig-progress .hoverlayer .hovertext").first.text_content() or ""
    assert "ended" in label and "-s" in label  # the trial id and its end time


@pytest.mark.browser
def test_hostile_strings_show_as_text(loaded: tuple[Any, list[tuple[str, str]]]) -> None:
    """No injected script ran; the names are shown literally in the table and heading."""
    page, _ = loaded
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("#study-name").inner_text() == HOSTILE_STUDY
    page.fill("#table-filter", "onerror")
    table = page.locator("#trial-table").inner_text()
    assert HOSTILE_VARIANT in table
    page.fill("#table-filter", "")
    assert HOSTILE_ERROR in page.locator("#summary").inner_text()


@pytest.mark.browser
def test_table_sorts_by_a_column(loaded: tuple[Any, list[tuple[str, str]]]) -> None:
    """Clicking the seed header sorts the rows by seed, again reverses them."""
    page, _ = loaded
    header = page.locator("#trial-table th", has_text="seed")
    column = page.evaluate(
        "Array.from(document.querySelectorAll('#trial-table th'))"
        ".findIndex(t => t.textContent === 'seed')"
    )

    def seeds() -> list[int]:
        cells = page.locator(f"#trial-table tbody tr td:nth-child({column + 1})").all_inner_texts()
        return [int(c) for c in cells]

    header.click()
    assert seeds() == sorted(seeds())
    header.click()
    assert seeds() == sorted(seeds(), reverse=True)


@pytest.mark.browser
def test_curve_selector_redraws(loaded: tuple[Any, list[tuple[str, str]]]) -> None:
    """Choosing two trials and another metric redraws the learning curves with them."""
    page, _ = loaded
    options = page.locator("#curve-trials option").all()
    page.select_option(
        "#curve-trials", [options[0].get_attribute("value"), options[1].get_attribute("value")]
    )
    page.select_option("#curve-metric", "loss")
    page.wait_for_function(
        "document.querySelectorAll('#fig-curves .scatterlayer .trace').length === 2"
    )
    assert "loss" in (page.locator("#fig-curves .gtitle").text_content() or "")
