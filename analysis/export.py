"""PNG export of a study's main figures, for papers (``btnet-lab dashboard STUDY --png DIR``).

Figures are rendered by kaleido, which drives the system Chromium (``/usr/bin/chromium`` on
Debian). Interactive menus are dropped; figures with a menu get one file per menu entry (the
Pareto front per probe resolution, the cross-resolution matrix per variant).
"""

from __future__ import annotations

import copy
import logging
import os
import re
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from analysis.dashboard import Report
from btnet_core.errors import BTNetError

logger = logging.getLogger(__name__)

#: Sections exported, in this order.
MAIN_FIGURES = ("forest", "resolution", "matrix", "pareto", "importance", "curves", "progress")


class ExportError(BTNetError):
    """A figure could not be rendered to PNG (no Chromium, kaleido missing, a write failed)."""


def figure_variants(section_id: str, fig: go.Figure) -> list[tuple[str, go.Figure]]:
    """The static figures of one dashboard figure: one per menu entry, without the menu."""
    menus = fig.layout.updatemenus
    if not menus:
        return [(section_id, fig)]
    out = []
    for button in menus[0].buttons:
        static = copy.deepcopy(fig)
        static.layout.updatemenus = ()
        visible = button.args[0].get("visible") if button.args else None
        if visible is not None:
            for trace, show in zip(static.data, visible, strict=False):
                trace.visible = bool(show)
        slug = re.sub(r"[^A-Za-z0-9]+", "_", str(button.label)).strip("_").lower() or "view"
        out.append((f"{section_id}_{slug}", static))
    return out


def export_png(
    report: Report,
    out_dir: str | os.PathLike[str],
    width: int = 1100,
    scale: float = 2.0,
) -> list[Path]:
    """Write the report's main figures as PNG files.

    Args:
        report: A dashboard report (:func:`analysis.dashboard.build_report`).
        out_dir: Folder (created when missing).
        width: Width in CSS pixels (height: the figure's own).
        scale: Pixel density (2: print quality at that width).

    Returns:
        The files written.

    Raises:
        ExportError: Chromium or kaleido is missing, or a file cannot be written.
    """
    out = Path(out_dir)
    figs: list[go.Figure] = []
    paths: list[Path] = []
    for section_id in MAIN_FIGURES:
        fig = report.figure(section_id)
        if fig is None:
            continue
        for name, static in figure_variants(section_id, fig):
            figs.append(static)
            paths.append(out / f"{name}.png")
    if not figs:
        return []
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out}: {exc.strerror or exc}") from exc
    # kaleido and its browser driver log every step at INFO; a user exporting figures only
    # needs to hear about failures.
    noisy = [logging.getLogger(name) for name in ("kaleido", "choreographer")]
    levels = [lg.level for lg in noisy]
    for lg in noisy:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        # kaleido can return without writing a figure when its browser is starved (seen on
        # a loaded 2-core machine): what is missing is rendered once more, then reported.
        todo = list(range(len(figs)))
        for _attempt in range(2):
            _write_pngs([figs[i] for i in todo], [paths[i] for i in todo], width, scale)
            todo = [i for i in todo if not _is_png(paths[i])]
            if not todo:
                break
    finally:
        for lg, level in zip(noisy, levels, strict=True):
            lg.setLevel(level)
    if todo:
        names = ", ".join(paths[i].name for i in todo)
        raise ExportError(f"PNG export wrote no file for {names} (twice); is Chromium working?")
    logger.info("wrote %d PNG figures to %s", len(paths), out)
    return paths


def _is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def _write_pngs(figs: list[go.Figure], paths: list[Path], width: int, scale: float) -> None:
    try:
        pio.write_images(
            figs,
            [str(p) for p in paths],
            format="png",
            width=width,
            height=[f.layout.height or 500 for f in figs],
            scale=scale,
        )
    except ImportError as exc:
        raise ExportError("PNG export needs kaleido: pip install 'btnet-lab[export]'") from exc
    except Exception as exc:  # kaleido reports a missing or broken browser in many ways
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"PNG export failed ({first}); kaleido needs Chromium, e.g. /usr/bin/chromium"
        ) from exc
