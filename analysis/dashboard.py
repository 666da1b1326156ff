"""A study's dashboard: one self-contained HTML file that works offline.

``btnet-lab dashboard STUDY -o report.html`` writes a page with plotly.js embedded (no network
access needed to open it) holding: a summary, the ablation forest plot, accuracy against
probe resolution per variant (branch and upsample paths), the cross-resolution matrix, the
progress of the study, parallel coordinates, parameter importance, learning curves with a
trial selector, the Pareto front and a sortable, filterable trial table.

The page is data plus a small script: the report is embedded as JSON in a
``<script type="application/json">`` element (with ``<``, ``>`` and ``&`` escaped so that no
string can close the element) and drawn by the script; the live view (:mod:`analysis.live`)
serves the same page and swaps in fresh JSON as trials land. Table cells are set with
``textContent`` and figure labels are HTML-escaped, so no user string (a variant name, an
error message) is ever interpreted as markup.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from analysis import figures as F
from analysis._page import page_html
from analysis.importance import param_importances
from analysis.pareto import pareto_table
from analysis.stats import compare_variants
from analysis.store import config_key, read_curves, read_trials
from analysis.storefs import write_local_text
from btnet_core.errors import StoreError

logger = logging.getLogger(__name__)

#: Learning curves are embedded for at most this many trials (the best ones).
MAX_CURVE_TRIALS = 200
#: Trials shown per group in the resolution figure and matrix of a sweep.
TOP_K = 5


@dataclass
class Section:
    """One figure of the dashboard.

    Attributes:
        id: HTML id suffix (``fig-<id>``).
        title: Heading.
        figure: The figure, or None when the study has nothing to show for it.
        note: Why there is no figure, or a caption.
    """

    id: str
    title: str
    figure: go.Figure | None
    note: str = ""


@dataclass
class Report:
    """Everything the dashboard shows of one study."""

    study: str
    kind: str
    summary: dict[str, Any]
    sections: list[Section]
    table: dict[str, Any]
    curves: dict[str, Any]
    generated_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    )

    def figure(self, section_id: str) -> go.Figure | None:
        """The figure of a section, or None."""
        for s in self.sections:
            if s.id == section_id:
                return s.figure
        return None


def build_report(
    root: str | os.PathLike[str],
    study: str,
    baseline: str | None = None,
    max_curve_trials: int = MAX_CURVE_TRIALS,
) -> Report:
    """Read a study from the store and compute every figure of its dashboard.

    Args:
        root: Store root.
        study: Study name.
        baseline: Baseline variant of an ablation (default ``baseline``).
        max_curve_trials: Trials whose learning curves are embedded.

    Returns:
        The report.

    Raises:
        StoreError: No store, an unknown study, or a store of a newer schema version.
    """
    started = time.monotonic()
    trials = read_trials(root, study)
    kind = str(trials["kind"].mode().iloc[0])
    objective, mode = F.objective_column(trials)
    is_ablation = kind == "ablation" and trials["variant"].notna().any()
    sections: list[Section] = []

    comparisons = pd.DataFrame()
    forest_note = "The forest plot compares ablation variants with a baseline; this is a sweep."
    if is_ablation:
        try:
            comparisons = compare_variants(trials, baseline)
            forest_note = ""
        except StoreError as exc:
            forest_note = f"No comparison: {exc}."
    baseline_name = comparisons["baseline"].iloc[0] if not comparisons.empty else None
    sections.append(
        Section("forest", "Ablation forest plot", F.forest_figure(comparisons), forest_note)
    )

    groups = _groups(trials, objective, mode, is_ablation, baseline_name)
    sections.append(
        Section(
            "resolution",
            "Accuracy against probe resolution",
            F.resolution_figure(trials, groups),
            "" if groups else "No completed trial reports accuracies.",
        )
    )
    sections.append(
        Section(
            "matrix",
            "Cross-resolution matrix",
            F.matrix_figure(groups, list(trials.columns)),
            "No completed trial reports acc_a_b metrics." if not groups else "",
        )
    )
    sections.append(
        Section(
            "progress",
            "Progress",
            F.progress_figure(trials, objective, mode),
            "No completed trial with an end time and an objective yet.",
        )
    )
    sections.append(
        Section(
            "parcoords",
            "Parallel coordinates",
            F.parcoords_figure(trials, objective, mode),
            "Needs two completed trials and a config value that varies.",
        )
    )
    imp_note = "Parameter importance applies to sweeps; an ablation's variants are compared above."
    imp_fig = None
    if not is_ablation:
        try:
            imp_fig = F.importance_figure(param_importances(trials))
            imp_note = "fANOVA and PED-ANOVA (Optuna) on the completed trials."
        except StoreError as exc:
            imp_note = f"No importance: {exc}."
    sections.append(Section("importance", "Parameter importance", imp_fig, imp_note))

    curves_data, curves_fig = _curves(
        root, study, trials, objective, mode, is_ablation, max_curve_trials
    )
    sections.append(
        Section(
            "curves",
            "Learning curves",
            curves_fig,
            "" if curves_fig is not None else "The study stored no learning curves.",
        )
    )
    points = pareto_table(trials)
    pareto_fig = F.pareto_figure(points)
    sections.append(
        Section(
            "pareto",
            "Pareto front",
            pareto_fig,
            "Points: variant means (ablation) or trials (sweep); lines join the front."
            if pareto_fig is not None
            else "Needs acc_112_r metrics with macs_r / params_r costs.",
        )
    )
    for s in sections:
        if s.figure is not None and s.id in ("resolution", "matrix", "progress", "parcoords"):
            s.note = ""
    report = Report(
        study=study,
        kind=kind,
        summary=_summary(trials, objective, mode, baseline_name, comparisons),
        sections=sections,
        table=_table(trials, objective, mode),
        curves=curves_data,
    )
    logger.info(
        "dashboard of %s: %d trials, built in %.2f s",
        study,
        len(trials),
        time.monotonic() - started,
    )
    return report


def _groups(
    trials: pd.DataFrame,
    objective: str | None,
    mode: str,
    is_ablation: bool,
    baseline: str | None,
) -> list[tuple[str, pd.DataFrame]]:
    done = F.completed(trials)
    if done.empty:
        return []
    if is_ablation:
        names = sorted(done["variant"].dropna().unique(), key=lambda v: (v != baseline, str(v)))
        return [(str(v), done[done["variant"] == v]) for v in names]
    best = F.top_trials(trials, objective, mode, TOP_K)
    if best.empty:
        best = done.head(TOP_K)
    return [(str(t), best[best["trial_id"] == t]) for t in best["trial_id"]]


def _curves(
    root: str | os.PathLike[str],
    study: str,
    trials: pd.DataFrame,
    objective: str | None,
    mode: str,
    is_ablation: bool,
    limit: int,
) -> tuple[dict[str, Any], go.Figure | None]:
    """Embedded curve data ({metrics, trials, data, default}) and the initial figure.

    Sweeps embed the ``limit`` best trials; ablations the best ``limit / variants`` of each
    variant, so that every variant can be shown.
    """
    if objective and is_ablation:
        variants = trials["variant"].dropna().unique()
        per = max(1, limit // max(1, len(variants)))
        parts = [
            F.top_trials(trials[trials["variant"] == v], objective, mode, per) for v in variants
        ]
        ranked = pd.concat(parts).sort_values(objective, ascending=(mode == "min"), kind="stable")
    elif objective:
        ranked = F.top_trials(trials, objective, mode, limit)
    else:
        ranked = trials.head(0)
    if ranked.empty:
        ranked = trials.head(limit)
    ids = [str(t) for t in ranked["trial_id"]]
    empty: dict[str, Any] = {"metrics": [], "trials": [], "data": {}, "default": [], "total": 0}
    if not ids:
        return empty, None
    curves = read_curves(root, study, trial_ids=ids)
    if curves.empty:
        return empty, None
    metrics = sorted(curves["metric"].unique(), key=lambda m: (m != (objective or "")[6:], m))
    labels = {}
    for _, row in ranked.iterrows():
        tid = str(row["trial_id"])
        variant = row.get("variant")
        label = f"{tid} ({variant})" if isinstance(variant, str) and variant not in tid else tid
        labels[tid] = label
    data: dict[str, dict[str, list[list[Any]]]] = {}
    for (metric, tid), part in curves.groupby(["metric", "trial_id"], sort=False):
        data.setdefault(str(metric), {})[str(tid)] = [
            part["iteration"].astype(int).tolist(),
            [None if not np.isfinite(v) else float(v) for v in part["value"]],
        ]
    have = {t for m in data.values() for t in m}
    ids = [t for t in ids if t in have]
    if is_ablation:
        default, seen = [], set()
        for t in ids:
            v = ranked.loc[ranked["trial_id"] == t, "variant"].iloc[0]
            if v not in seen:
                seen.add(v)
                default.append(t)
    else:
        default = ids[:TOP_K]
    objective_values = (
        dict(zip(ranked["trial_id"].astype(str), ranked[objective], strict=True))
        if objective
        else {}
    )
    payload = {
        "metrics": metrics,
        "trials": [
            {"id": t, "label": labels.get(t, t), "objective": _num(objective_values.get(t))}
            for t in ids
        ],
        "data": data,
        "default": default,
        "total": len(trials),
    }
    fig = F.curves_figure(curves, metrics[0], default, labels)
    return payload, fig


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def _summary(
    trials: pd.DataFrame,
    objective: str | None,
    mode: str,
    baseline: str | None,
    comparisons: pd.DataFrame,
) -> dict[str, Any]:
    status = trials["status"].value_counts()
    summary: dict[str, Any] = {
        "trials": len(trials),
        "completed": int(status.get("completed", 0)),
        "errors": int(status.get("error", 0)),
        "diverged": int(status.get("diverged", 0)),
        "cpu_hours": _num(trials["cpu_hours"].sum(min_count=1)),
        "gpu_hours": _num(trials["gpu_hours"].sum(min_count=1)),
        "objective": objective.removeprefix("final_") if objective else None,
        "mode": mode,
        "baseline": baseline,
        "started": _iso(trials["start_time"].min()),
        "ended": _iso(trials["end_time"].max()),
        "best": None,
        "error_messages": [],
        "variants": None,
    }
    best = F.top_trials(trials, objective, mode, 1)
    if not best.empty and objective:
        row = best.iloc[0]
        summary["best"] = {
            "trial_id": str(row["trial_id"]),
            "variant": row["variant"] if isinstance(row.get("variant"), str) else None,
            "value": _num(row[objective]),
        }
    errors = trials.loc[trials["status"] != "completed", "error"].dropna()
    if not errors.empty:
        counts = errors.value_counts().head(8)
        summary["error_messages"] = [[str(k), int(v)] for k, v in counts.items()]
    if "variant" in trials and trials["variant"].notna().any() and objective:
        done = F.completed(trials, objective)
        agg = done.groupby("variant")[objective].agg(["mean", "std", "size"]).reset_index()
        diffs = {}
        if not comparisons.empty:
            sel = comparisons[comparisons["metric"] == objective.removeprefix("final_")]
            diffs = {r.variant: r for r in sel.itertuples()}
        summary["variants"] = [
            {
                "variant": str(r.variant),
                "mean": _num(r.mean),
                "std": _num(r.std),
                "n": int(r.size),
                "diff": _num(diffs[r.variant].mean_diff) if r.variant in diffs else None,
                "ci": [_num(diffs[r.variant].ci_low), _num(diffs[r.variant].ci_high)]
                if r.variant in diffs
                else None,
                "p": _num(diffs[r.variant].p_ttest) if r.variant in diffs else None,
                "flag": str(diffs[r.variant].flag) if r.variant in diffs else "",
            }
            for r in agg.sort_values("mean", ascending=(mode == "min")).itertuples()
        ]
    return summary


def _iso(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).strftime("%Y-%m-%d %H:%M")


def _table(trials: pd.DataFrame, objective: str | None, mode: str) -> dict[str, Any]:
    """The trial table: key columns, varying config, main metrics; best first."""
    cols = ["trial_id"]
    if trials["variant"].notna().any():
        cols.append("variant")
    cols += ["seed", "status"]
    if objective:
        cols.append(objective)
        best = "best_" + objective.removeprefix("final_")
        if best in trials:
            cols.append(best)
    cfg = [
        c
        for c in trials.columns
        if c.startswith("cfg_") and trials[c].dropna().astype(str).nunique() > 1
    ]
    cols += cfg
    cols += [
        c for c in ("iterations", "wall_time_s", "gpu_hours", "end_time", "error") if c in trials
    ]
    frame = trials[cols]
    if objective:
        frame = frame.assign(_done=frame["status"] == "completed").sort_values(
            ["_done", objective],
            ascending=[False, mode == "min"],
            na_position="last",
            kind="stable",
        )
        frame = frame.drop(columns="_done")
    headers = [config_key(c) if c.startswith("cfg_") else c.removeprefix("final_") for c in cols]
    columns = [_json_column(frame[c]) for c in frame.columns]
    rows = [list(r) for r in zip(*columns, strict=True)] if columns else []
    return {"columns": headers, "rows": rows}


def _json_column(series: pd.Series) -> list[Any]:
    """A column as JSON-ready Python values (null for missing and non-finite values)."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        text = series.dt.strftime("%Y-%m-%d %H:%M:%S")
        return [None if pd.isna(v) else v for v in text.tolist()]
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=float)
        return [float(v) if np.isfinite(v) else None for v in values]
    return [_cell(v) for v in series.tolist()]


def _cell(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.strftime("%Y-%m-%d %H:%M:%S")
    if pd.isna(value):
        return None
    return str(value)


def report_json(report: Report) -> str:
    """The report as JSON, safe to embed in a ``<script>`` element."""
    sections = []
    for s in report.sections:
        fig = json.loads(pio.to_json(s.figure, validate=False)) if s.figure is not None else None
        sections.append({"id": s.id, "title": s.title, "figure": fig, "note": s.note})
    payload = {
        "study": report.study,
        "kind": report.kind,
        "summary": report.summary,
        "sections": sections,
        "table": report.table,
        "curves": report.curves,
        "generated_at": report.generated_at,
    }
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False, default=_json_default)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, _dt.datetime)):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def render_html(report: Report, live: dict[str, Any] | None = None) -> str:
    """The self-contained page of a report.

    Args:
        report: The report.
        live: For the live view: ``{"interval_ms": ..., "version": ...}``; None for a file.
    """
    live_json = json.dumps(live).replace("<", "\\u003c") if live else "null"
    return page_html(
        title=f"{html.escape(report.study)} · btnet-lab",
        data_json=report_json(report),
        live_json=live_json,
    )


def write_html(report: Report, output: str | os.PathLike[str]) -> Path:
    """Write a report's page to ``output`` atomically (a crash leaves no half file).

    Returns:
        The path written.

    Raises:
        StoreError: The file cannot be written.
    """
    text = render_html(report)
    out = write_local_text(output, text, "the dashboard")
    logger.info("wrote dashboard of %s to %s (%.1f MB)", report.study, out, len(text) / 1e6)
    return out


def write_dashboard(
    root: str | os.PathLike[str],
    study: str,
    output: str | os.PathLike[str],
    baseline: str | None = None,
) -> Path:
    """Build a study's dashboard and write it to ``output``.

    Returns:
        The path written.

    Raises:
        StoreError: As :func:`build_report` and :func:`write_html`.
    """
    return write_html(build_report(root, study, baseline), output)


def waiting_page(study: str, live: dict[str, Any]) -> str:
    """The live view's page before the study's first trial has landed."""
    empty = Report(
        study=study,
        kind="",
        summary={"waiting": True},
        sections=[],
        table={"columns": [], "rows": []},
        curves={"metrics": [], "trials": [], "data": {}, "default": [], "total": 0},
    )
    return render_html(empty, live)
