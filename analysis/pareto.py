"""Pareto fronts of accuracy against cost (MACs or parameters), per probe resolution.

At a probe resolution r, every (trial or variant, path) gives one point: its verification
accuracy on "112&r" against the cost of embedding an r x r probe on that path. A point is on
the front when no other point is at least as accurate and at most as costly, and strictly
better in one of the two. For ablations the points are variant means over seeds; for sweeps
they are single trials.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.metrics import HR, PATHS, acc_column, cost_column, probe_resolutions

POINT_COLUMNS = ["label", "path", "resolution", "cost_kind", "cost", "accuracy", "n", "on_front"]


def pareto_mask(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Which points are not dominated (lower cost and higher accuracy are better).

    Args:
        cost: Costs, finite.
        accuracy: Accuracies, finite, same length.

    Returns:
        Boolean mask; identical points are all kept.
    """
    cost = np.asarray(cost, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    n = cost.size
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    # Cheapest first; among equal costs the most accurate first.
    order = np.lexsort((-accuracy, cost))
    best = -np.inf  # best accuracy among strictly cheaper points
    i = 0
    while i < n:
        j = i
        c = cost[order[i]]
        while j < n and cost[order[j]] == c:
            j += 1
        group = order[i:j]
        top = accuracy[group].max()
        if top > best:
            mask[group[accuracy[group] == top]] = True
            best = top
        i = j
    return mask


def pareto_points(
    trials: pd.DataFrame,
    resolution: int,
    cost_kind: str = "macs",
    gallery: int = HR,
    paths: tuple[str, ...] = PATHS,
) -> pd.DataFrame:
    """Accuracy-cost points of one probe resolution, with their front membership.

    Args:
        trials: Trials of one study (completed ones are used).
        resolution: Probe resolution r (accuracy of ``gallery&r``).
        cost_kind: ``"macs"`` or ``"params"``.
        gallery: Gallery resolution.
        paths: Paths to include.

    Returns:
        Columns :data:`POINT_COLUMNS`; empty when the study reports no such columns.
    """
    done = trials[trials["status"] == "completed"] if "status" in trials else trials
    by_variant = "variant" in done.columns and done["variant"].notna().any()
    frames = []
    for path in paths:
        acc, cost = acc_column(gallery, resolution, path), cost_column(cost_kind, resolution, path)
        if acc not in done.columns or cost not in done.columns:
            continue
        part = done[[acc, cost] + (["variant"] if by_variant else ["trial_id"])].dropna()
        if part.empty:
            continue
        if by_variant:
            grouped = part.groupby("variant")
            pts = pd.DataFrame(
                {
                    "label": grouped[acc].mean().index.astype(str),
                    "accuracy": grouped[acc].mean().to_numpy(),
                    "cost": grouped[cost].mean().to_numpy(),
                    "n": grouped[acc].size().to_numpy(),
                }
            )
        else:
            pts = pd.DataFrame(
                {
                    "label": part["trial_id"].astype(str).to_numpy(),
                    "accuracy": part[acc].to_numpy(dtype=float),
                    "cost": part[cost].to_numpy(dtype=float),
                    "n": 1,
                }
            )
        pts["path"] = path
        frames.append(pts)
    if not frames:
        return pd.DataFrame(columns=POINT_COLUMNS)
    points = pd.concat(frames, ignore_index=True)
    points = points[np.isfinite(points["accuracy"]) & np.isfinite(points["cost"])]
    # The method's own path is usually one of the other two (BTNet deploys its branches); a
    # method point identical to another path's point would only be drawn twice.
    key = ["label", "cost", "accuracy"]
    other = pd.MultiIndex.from_frame(points.loc[points["path"] != "method", key])
    twin = points["path"].eq("method").to_numpy() & pd.MultiIndex.from_frame(points[key]).isin(
        other
    )
    points = points[~twin]
    points = points.assign(resolution=resolution, cost_kind=cost_kind)
    points["on_front"] = pareto_mask(points["cost"].to_numpy(), points["accuracy"].to_numpy())
    return points[POINT_COLUMNS].reset_index(drop=True)


def pareto_table(trials: pd.DataFrame, gallery: int = HR) -> pd.DataFrame:
    """Points of every probe resolution below the gallery's and both cost kinds."""
    frames = [
        pareto_points(trials, r, kind, gallery)
        for r in probe_resolutions(trials.columns, gallery)
        if r != gallery
        for kind in ("macs", "params")
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return pd.DataFrame(columns=POINT_COLUMNS)
    return pd.concat(frames, ignore_index=True)
