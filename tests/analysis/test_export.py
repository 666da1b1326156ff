"""Tests of analysis/export.py: PNG figures through kaleido and the system Chromium."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest

from analysis.dashboard import Report, Section
from analysis.export import ExportError, export_png, figure_variants

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _menu_figure() -> go.Figure:
    fig = go.Figure(
        [go.Scatter(x=[1, 2], y=[1, 2]), go.Scatter(x=[1, 2], y=[2, 1], visible=False)]
    )
    fig.update_layout(
        updatemenus=[
            {
                "buttons": [
                    {"label": "probe 7", "method": "update", "args": [{"visible": [True, False]}]},
                    {
                        "label": "probe 14",
                        "method": "update",
                        "args": [{"visible": [False, True]}],
                    },
                ]
            }
        ]
    )
    return fig


def _report() -> Report:
    return Report(
        study="s",
        kind="ablation",
        summary={},
        sections=[
            Section("forest", "Forest", go.Figure(go.Scatter(x=[-0.01], y=["v · 112&7"]))),
            Section("pareto", "Pareto", _menu_figure()),
            Section("importance", "Importance", None, "sweeps only"),
        ],
        table={"columns": [], "rows": []},
        curves={},
    )


def _fake_writer(calls: list[list[str]], missing: str, passes: int):
    """A stand-in for plotly's write_images: writes a PNG header to every path except
    ``missing``, which it leaves out in its first ``passes`` calls."""

    def write_images(figs, paths, **kwargs) -> None:
        calls.append([Path(p).name for p in paths])
        for p in paths:
            if Path(p).name != missing or len(calls) > passes:
                Path(p).write_bytes(PNG_MAGIC + b"figure")

    return write_images


def test_a_figure_kaleido_did_not_write_is_rendered_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file missing after the first pass (a starved browser) is rendered once more, alone."""
    calls: list[list[str]] = []
    monkeypatch.setattr("analysis.export.pio.write_images", _fake_writer(calls, "forest.png", 1))
    files = export_png(_report(), tmp_path / "png")
    assert calls == [
        ["forest.png", "pareto_probe_7.png", "pareto_probe_14.png"],
        ["forest.png"],
    ]
    assert all(f.read_bytes()[:8] == PNG_MAGIC for f in files)


def test_a_figure_never_written_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing twice: ExportError names the file instead of returning a path to nothing."""
    monkeypatch.setattr(
        "analysis.export.pio.write_images", _fake_writer([], "pareto_probe_14.png", 9)
    )
    with pytest.raises(ExportError, match="no file for pareto_probe_14.png"):
        export_png(_report(), tmp_path / "png")


def test_menus_become_one_static_figure_per_entry() -> None:
    """A figure with a menu gives one figure per entry, with that entry's traces visible."""
    variants = figure_variants("pareto", _menu_figure())
    assert [name for name, _ in variants] == ["pareto_probe_7", "pareto_probe_14"]
    second = variants[1][1]
    assert [t.visible for t in second.data] == [False, True]
    assert not second.layout.updatemenus


@pytest.mark.browser
def test_png_export_writes_images(tmp_path: Path) -> None:
    """The main figures are written as PNG files by kaleido with the system Chromium."""
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("/usr/bin/chromium is not installed")
    pytest.importorskip("kaleido", reason="kaleido is not installed")
    files = export_png(_report(), tmp_path / "png", width=500, scale=1.0)
    assert [f.name for f in files] == ["forest.png", "pareto_probe_7.png", "pareto_probe_14.png"]
    for f in files:
        assert f.read_bytes()[:8] == PNG_MAGIC
        assert f.stat().st_size > 2000
