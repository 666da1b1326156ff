"""Leaderboards and output formats of ``btnet-lab results``.

The DataFrame readers themselves (:func:`~analysis.store.read_trials`,
:func:`~analysis.store.read_curves`, :func:`~analysis.store.sql`) live in
:mod:`analysis.store`; this module turns their results into what a person reads: a study's
leaderboard, and a table, CSV, JSON or Parquet rendering of any frame.
"""

from __future__ import annotations

import io
import math
import os
import sys
from typing import IO

import numpy as np
import pandas as pd

from analysis.figures import completed, objective_column
from analysis.stats import compare_variants
from analysis.store import config_key, read_trials
from btnet_core.errors import StoreError

FORMATS = ("table", "csv", "json", "parquet")
#: The table format shows at most this many rows unless told otherwise.
TABLE_MAX_ROWS = 200


def leaderboard(
    trials: pd.DataFrame, baseline: str | None = None, top: int | None = 20
) -> tuple[pd.DataFrame, str]:
    """A study's leaderboard and a one-line heading.

    Sweeps: one row per trial, best objective first (completed trials ranked, failed ones
    after them), with the config values that vary. Ablations: one row per variant with the
    objective's mean and spread over seeds and its paired difference to the baseline.

    Args:
        trials: Trials of one study.
        baseline: Baseline variant of an ablation (default ``baseline``).
        top: Rows to keep (None or 0: all).

    Returns:
        (frame, heading).
    """
    objective, mode = objective_column(trials)
    kind = str(trials["kind"].mode().iloc[0])
    status = trials["status"].value_counts()
    gpu = trials["gpu_hours"].sum(min_count=1)
    heading = (
        f"study {trials['study'].iloc[0]} ({kind}): {len(trials)} trials, "
        f"{int(status.get('completed', 0))} completed, {int(status.get('error', 0))} errors, "
        f"{int(status.get('diverged', 0))} diverged"
        + (f"; {gpu:.1f} GPU hours" if pd.notna(gpu) else "")
        + (f"; objective {objective.removeprefix('final_')} ({mode})" if objective else "")
    )
    if kind == "ablation" and trials["variant"].notna().any() and objective:
        frame = _ablation_board(trials, objective, mode, baseline)
    else:
        frame = _sweep_board(trials, objective, mode)
    if top:
        frame = frame.head(top)
    return frame.reset_index(drop=True), heading


def _ablation_board(
    trials: pd.DataFrame, objective: str, mode: str, baseline: str | None
) -> pd.DataFrame:
    metric = objective.removeprefix("final_")
    done = completed(trials, objective)
    agg = done.groupby("variant")[objective].agg(["size", "mean", "std"])
    failed = trials[trials["status"] != "completed"].groupby("variant").size()
    try:
        comp = compare_variants(trials, baseline, [metric]).set_index("variant")
    except StoreError:
        comp = pd.DataFrame()
    rows = []
    for variant in sorted(trials["variant"].dropna().unique()):
        row = {
            "variant": variant,
            "seeds": int(agg["size"].get(variant, 0)),
            "failed": int(failed.get(variant, 0)),
            f"mean_{metric}": agg["mean"].get(variant, math.nan),
            "std": agg["std"].get(variant, math.nan),
        }
        if not comp.empty and variant in comp.index:
            c = comp.loc[variant]
            row.update(
                diff=c["mean_diff"],
                ci_low=c["ci_low"],
                ci_high=c["ci_high"],
                p_ttest=c["p_ttest"],
                p_wilcoxon=c["p_wilcoxon"],
                pairs=int(c["n"]),
                flag=c["flag"],
            )
        elif not comp.empty:
            row.update(flag="baseline")
        rows.append(row)
    order = ["variant", "seeds", "failed", f"mean_{metric}", "std", "diff", "ci_low", "ci_high"]
    order += ["p_ttest", "p_wilcoxon", "pairs", "flag"]
    frame = pd.DataFrame(rows)
    frame = frame[[c for c in order if c in frame.columns]]
    return frame.sort_values(f"mean_{metric}", ascending=(mode == "min"), na_position="last")


def _sweep_board(trials: pd.DataFrame, objective: str | None, mode: str) -> pd.DataFrame:
    cfg = [
        c
        for c in trials.columns
        if c.startswith("cfg_") and trials[c].dropna().astype(str).nunique() > 1
    ]
    cols = ["trial_id", "status"]
    if objective:
        cols.append(objective)
        best = "best_" + objective.removeprefix("final_")
        if best in trials:
            cols.append(best)
    cols += cfg + [c for c in ("iterations", "gpu_hours", "error") if c in trials]
    frame = trials[cols].copy()
    if objective:
        frame["_done"] = (frame["status"] == "completed") & frame[objective].notna()
        frame = frame.sort_values(
            ["_done", objective],
            ascending=[False, mode == "min"],
            na_position="last",
            kind="stable",
        )
        ranks = np.where(frame["_done"], np.cumsum(frame["_done"].to_numpy()), 0)
        frame.insert(0, "rank", pd.array([r if r > 0 else None for r in ranks], dtype="Int64"))
        frame = frame.drop(columns="_done")
    return frame.rename(
        columns={c: config_key(c) for c in cfg}
        | ({objective: objective.removeprefix("final_")} if objective else {})
    )


def study_leaderboard(
    root: str | os.PathLike[str], study: str, baseline: str | None = None, top: int | None = 20
) -> tuple[pd.DataFrame, str]:
    """:func:`leaderboard` of a study read from the store."""
    return leaderboard(read_trials(root, study), baseline, top)


def render_table(frame: pd.DataFrame, max_rows: int | None = TABLE_MAX_ROWS) -> str:
    """A plain-text table: numbers to 4 significant digits, times to the second.

    Args:
        frame: The data.
        max_rows: Rows shown (None: all); a last line says how many were left out.
    """
    if frame.columns.empty:
        return "(no columns)"
    shown = frame if max_rows is None else frame.head(max_rows)
    text = {c: [_cell(v) for v in shown[c].tolist()] for c in shown.columns}
    widths = {c: max([len(str(c))] + [len(v) for v in text[c]]) for c in shown.columns}
    numeric = {c: pd.api.types.is_numeric_dtype(shown[c].dtype) for c in shown.columns}
    lines = ["  ".join(str(c).ljust(widths[c]) for c in shown.columns).rstrip()]
    lines.append("  ".join("-" * widths[c] for c in shown.columns))
    for i in range(len(shown)):
        cells = [
            text[c][i].rjust(widths[c]) if numeric[c] else text[c][i].ljust(widths[c])
            for c in shown.columns
        ]
        lines.append("  ".join(cells).rstrip())
    if len(frame) == 0:
        lines.append("(no rows)")
    elif max_rows is not None and len(frame) > max_rows:
        lines.append(
            f"... {len(frame) - max_rows} more rows (of {len(frame)}); use --format csv, json "
            "or parquet for all"
        )
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = str(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def write_frame(
    frame: pd.DataFrame,
    fmt: str,
    output: str | os.PathLike[str] | None = None,
    stream: IO[str] | None = None,
    max_rows: int | None = TABLE_MAX_ROWS,
) -> None:
    """Write a frame as a table, CSV, JSON (an array of records) or Parquet.

    Args:
        frame: The data.
        fmt: One of :data:`FORMATS`.
        output: File to write (required for Parquet); default ``stream``.
        stream: Text stream (default stdout).
        max_rows: Row limit of the table format.

    Raises:
        StoreError: An unknown format, Parquet without a file, or the file cannot be written.
    """
    if fmt not in FORMATS:
        raise StoreError(f"unknown output format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise StoreError("--format parquet needs an output file: add -o FILE.parquet")
        try:
            frame.to_parquet(output, index=False)
        except OSError as exc:
            raise StoreError(f"cannot write {output}: {exc.strerror or exc}") from exc
        return
    buf = io.StringIO()
    if fmt == "table":
        buf.write(render_table(frame, max_rows) + "\n")
    elif fmt == "csv":
        frame.to_csv(buf, index=False)
    else:
        buf.write(frame.to_json(orient="records", date_format="iso", double_precision=10))
        buf.write("\n")
    if output is not None:
        try:
            with open(output, "w", encoding="utf-8", newline="") as fh:
                fh.write(buf.getvalue())
        except OSError as exc:
            raise StoreError(f"cannot write {output}: {exc.strerror or exc}") from exc
    else:
        (stream or sys.stdout).write(buf.getvalue())
