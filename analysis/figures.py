"""Plotly figures of a study, built from DataFrames read from the store.

Each function returns a :class:`plotly.graph_objects.Figure`, or None when the study has
nothing to show for it (the dashboard then says why). Every string that comes from a user
(study, variant, trial ids, config values, errors) goes through :func:`esc` before it reaches
a figure: Plotly renders a subset of HTML in labels and hover text, and an escaped string is
shown literally.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.importance import looks_log_scaled
from analysis.metrics import HR, acc_column, accuracy_metrics, pair_label, probe_resolutions
from analysis.store import config_key

PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
_BASE_LAYOUT = {
    "template": "plotly_white",
    "margin": {"l": 70, "r": 30, "t": 50, "b": 60},
    "font": {"size": 12},
}


def esc(value: object) -> str:
    """A user string made safe (and literal) for Plotly's HTML-like text rendering."""
    return html.escape(str(value), quote=False)


def color(i: int) -> str:
    """The i-th colour of the palette (cycled)."""
    return PALETTE[i % len(PALETTE)]


def _layout(fig: go.Figure, title: str, **kwargs: object) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01}, **_BASE_LAYOUT)
    fig.update_layout(**kwargs)
    return fig


def objective_column(trials: pd.DataFrame) -> tuple[str | None, str]:
    """(``final_<metric>`` column of the study's objective, mode); None when unknown."""
    metric = _mode_of(trials, "metric")
    mode = _mode_of(trials, "mode") or "max"
    if metric is None:
        candidates = [m.name for m in accuracy_metrics(trials.columns)]
        metric = candidates[0] if candidates else None
    col = f"final_{metric}" if metric else None
    if col is not None and col not in trials.columns:
        col = None
    return col, mode


def _mode_of(trials: pd.DataFrame, column: str) -> str | None:
    if column not in trials.columns or trials[column].dropna().empty:
        return None
    return str(trials[column].dropna().mode().iloc[0])


def completed(trials: pd.DataFrame, column: str | None = None) -> pd.DataFrame:
    """Completed trials, with a finite ``column`` when one is given."""
    done = trials[trials["status"] == "completed"]
    if column is not None and column in done.columns:
        values = pd.to_numeric(done[column], errors="coerce")
        done = done[np.isfinite(values)]
    return done


def top_trials(trials: pd.DataFrame, objective: str | None, mode: str, k: int) -> pd.DataFrame:
    """The ``k`` best completed trials by the objective."""
    if objective is None:
        return trials.head(0)
    done = completed(trials, objective)
    return done.sort_values(objective, ascending=(mode == "min"), kind="stable").head(k)


# --------------------------------------------------------------------------------------------


def forest_figure(comparisons: pd.DataFrame) -> go.Figure | None:
    """Ablation forest plot: mean paired difference with its 95% interval, per variant and pair.

    Args:
        comparisons: Output of :func:`analysis.stats.compare_variants`.
    """
    if comparisons.empty:
        return None
    rows = comparisons[comparisons["path"].isin(["method", ""])]
    rows = rows[rows["metric"] != "loss"]
    if rows.empty:
        rows = comparisons
    fig = go.Figure()
    labels = [
        f"{esc(v)} · {esc(pair_label(m))}"
        for v, m in zip(rows["variant"], rows["metric"], strict=True)
    ]
    for i, (variant, part) in enumerate(rows.groupby("variant", sort=True)):
        y = [f"{esc(variant)} · {esc(pair_label(m))}" for m in part["metric"]]
        mean = part["mean_diff"].to_numpy(dtype=float)
        hover = [
            (
                f"<b>{esc(variant)}</b> vs {esc(b)}<br>{esc(pair_label(m))}<br>"
                f"diff {d:+.4f} [{lo:+.4f}, {hi:+.4f}]<br>n={n}, p(t)={_p(pt)}, "
                f"p(Wilcoxon)={_p(pw)}" + (f"<br>{esc(flag)}" if flag else "")
            )
            for m, b, d, lo, hi, n, pt, pw, flag in zip(
                part["metric"],
                part["baseline"],
                part["mean_diff"],
                part["ci_low"],
                part["ci_high"],
                part["n"],
                part["p_ttest"],
                part["p_wilcoxon"],
                part["flag"],
                strict=True,
            )
        ]
        few = part["too_few"].to_numpy(dtype=bool)
        fig.add_trace(
            go.Scatter(
                x=mean,
                y=y,
                mode="markers",
                name=esc(variant),
                marker={
                    "color": color(i),
                    "size": 9,
                    "symbol": ["circle-open" if f else "circle" for f in few],
                },
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": (part["ci_high"] - part["mean_diff"]).to_numpy(dtype=float),
                    "arrayminus": (part["mean_diff"] - part["ci_low"]).to_numpy(dtype=float),
                    "thickness": 1.5,
                },
                hovertext=hover,
                hoverinfo="text",
            )
        )
    fig.add_vline(x=0.0, line={"color": "#444", "dash": "dash", "width": 1})
    _layout(
        fig,
        "Ablation: accuracy difference to the baseline (paired by seed, 95% CI)",
        height=max(320, 24 * len(labels) + 140),
        xaxis={"title": "variant − baseline (verification accuracy)", "tickformat": "+.3f"},
        yaxis={"autorange": "reversed", "type": "category"},
        legend={"title": {"text": "variant"}},
    )
    return fig


def _p(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


def resolution_figure(
    trials: pd.DataFrame, groups: Sequence[tuple[str, pd.DataFrame]], gallery: int = HR
) -> go.Figure | None:
    """Accuracy of ``gallery&r`` against probe resolution r, branch and upsample paths.

    Args:
        trials: All trials (for the list of resolutions).
        groups: (label, completed trials) per line group: variants, or single best trials.
        gallery: Gallery resolution.
    """
    resolutions = sorted(probe_resolutions(trials.columns, gallery))
    if not resolutions or not groups:
        return None
    fig = go.Figure()
    drawn = False
    for i, (label, part) in enumerate(groups):
        for path, dash in (("branch", "solid"), ("upsample", "dot")):
            xs, ys, errs, ns = [], [], [], []
            for r in resolutions:
                col = acc_column(gallery, r, path)
                if col not in part.columns:
                    col = acc_column(gallery, r, "method") if r == gallery else col
                if col not in part.columns:
                    continue
                values = pd.to_numeric(part[col], errors="coerce").dropna()
                if values.empty:
                    continue
                xs.append(str(r))
                ys.append(float(values.mean()))
                errs.append(float(values.std(ddof=1)) if len(values) > 1 else 0.0)
                ns.append(len(values))
            if not xs:
                continue
            drawn = True
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines+markers",
                    name=f"{esc(label)} ({path})",
                    legendgroup=esc(label),
                    line={"color": color(i), "dash": dash},
                    error_y={"type": "data", "array": errs, "thickness": 1},
                    customdata=ns,
                    hovertemplate=(
                        f"{esc(label)}, {path} path<br>{gallery}&%{{x}}: %{{y:.4f}}"
                        "<br>n=%{customdata}<extra></extra>"
                    ),
                )
            )
    if not drawn:
        return None
    _layout(
        fig,
        f"Verification accuracy against probe resolution ({gallery}&r; solid: branch, dotted: "
        "upsample to 112)",
        xaxis={"title": "probe resolution r (pixels)", "type": "category"},
        yaxis={"title": "accuracy", "tickformat": ".1%"},
        height=460,
    )
    return fig


def matrix_figure(
    groups: Sequence[tuple[str, pd.DataFrame]], columns: Sequence[str]
) -> go.Figure | None:
    """Cross-resolution matrix a&b (method path) as a heatmap; a menu switches the group.

    Args:
        groups: (label, completed trials) per selectable group; the first is shown.
        columns: Columns of the study.
    """
    metrics = [m for m in accuracy_metrics(columns) if m.path == "method"]
    if not metrics or not groups:
        return None
    res = sorted({m.a for m in metrics} | {m.b for m in metrics}, reverse=True)
    fig = go.Figure()
    buttons = []
    for i, (label, part) in enumerate(groups):
        z: list[list[float | None]] = [[None] * len(res) for _ in res]
        text = [[""] * len(res) for _ in res]
        for m in metrics:
            col = acc_column(m.a, m.b)
            if col not in part:
                continue
            values = pd.to_numeric(part[col], errors="coerce").dropna()
            if len(values):
                v = float(values.mean())
                z[res.index(m.a)][res.index(m.b)] = v
                text[res.index(m.a)][res.index(m.b)] = f"{100 * v:.1f}"
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=[str(r) for r in res],
                y=[str(r) for r in res],
                text=text,
                texttemplate="%{text}",
                colorscale="Viridis",
                zmin=0.5,
                zmax=1.0,
                visible=i == 0,
                name=esc(label),
                colorbar={"title": {"text": "accuracy"}, "tickformat": ".0%"},
                hovertemplate=f"{esc(label)}<br>%{{y}}&%{{x}}: %{{z:.4f}}<extra></extra>",
                xgap=2,
                ygap=2,
            )
        )
        buttons.append(
            {
                "label": esc(label),
                "method": "update",
                "args": [{"visible": [j == i for j in range(len(groups))]}],
            }
        )
    menus = []
    if len(groups) > 1:
        menus = [{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.15, "yanchor": "top"}]
    _layout(
        fig,
        "Cross-resolution matrix: accuracy of a&b (%)",
        xaxis={"title": "second image resolution b", "type": "category"},
        yaxis={"title": "first image resolution a", "type": "category"},
        updatemenus=menus,
        height=480,
    )
    return fig


def parcoords_figure(
    trials: pd.DataFrame,
    objective: str | None,
    mode: str = "max",
    max_lines: int = 2000,
    seed: int = 0,
) -> go.Figure | None:
    """Parallel coordinates of the varying config values (and variant) against the objective.

    Args:
        trials: Trials of one study.
        objective: ``final_<metric>`` column.
        mode: ``"max"`` or ``"min"``.
        max_lines: Lines drawn at most. Plotly draws parallel coordinates with WebGL, which
            without a GPU (headless, remote desktops) takes seconds per thousand lines; beyond
            this many trials the best tenth of ``max_lines`` and a seeded random sample of
            the rest are drawn, and the title says so.
        seed: Seed of that sample.
    """
    if objective is None:
        return None
    done = completed(trials, objective)
    if len(done) < 2:
        return None
    total = len(done)
    if total > max_lines:
        ranked = done.sort_values(objective, ascending=(mode == "min"), kind="stable")
        best = ranked.iloc[: max_lines // 10]
        rest = ranked.iloc[max_lines // 10 :]
        pick = np.random.default_rng(seed).choice(len(rest), max_lines - len(best), replace=False)
        done = pd.concat([best, rest.iloc[np.sort(pick)]])
    dims = []
    candidates = ["variant"] if "variant" in done and done["variant"].nunique() > 1 else []
    candidates += [c for c in done.columns if c.startswith("cfg_")]
    for col in candidates:
        values = done[col]
        if values.isna().any() or values.nunique() < 2:
            continue
        label = esc("variant" if col == "variant" else config_key(col))
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            cats = sorted(values.astype(str).unique())
            codes = values.astype(str).map({c: i for i, c in enumerate(cats)}).to_numpy()
            dims.append(
                {
                    "label": label,
                    "values": codes,
                    "tickvals": list(range(len(cats))),
                    "ticktext": [esc(c) for c in cats],
                }
            )
        else:
            arr = values.to_numpy(dtype=float)
            if looks_log_scaled(arr):
                dims.append({"label": f"log10 {label}", "values": np.log10(arr)})
            else:
                dims.append({"label": label, "values": arr})
    if not dims:
        return None
    obj = done[objective].to_numpy(dtype=float)
    dims.append({"label": esc(objective.removeprefix("final_")), "values": obj})
    fig = go.Figure(
        go.Parcoords(
            line={"color": obj, "colorscale": "Viridis", "showscale": True},
            dimensions=dims,
        )
    )
    shown = (
        f"{len(done)} completed trials"
        if len(done) == total
        else f"{len(done)} of {total} completed trials: the best {max_lines // 10} and a random "
        "sample of the rest"
    )
    _layout(fig, f"Parallel coordinates ({shown})", height=480)
    fig.update_layout(margin={"l": 130, "r": 80, "t": 90, "b": 40})
    return fig


def importance_figure(importances: pd.DataFrame) -> go.Figure | None:
    """Horizontal bars of parameter importance, one colour per evaluator."""
    if importances.empty:
        return None
    order = (
        importances.groupby("param")["importance"].max().sort_values(ascending=True).index.tolist()
    )
    fig = go.Figure()
    for i, (name, part) in enumerate(importances.groupby("evaluator", sort=True)):
        part = part.set_index("param").reindex(order)
        fig.add_trace(
            go.Bar(
                x=part["importance"].to_numpy(dtype=float),
                y=[esc(p) for p in order],
                orientation="h",
                name={"fanova": "fANOVA", "pedanova": "PED-ANOVA"}.get(name, esc(name)),
                marker={"color": color(i)},
                hovertemplate="%{y}: %{x:.3f}<extra>%{fullData.name}</extra>",
            )
        )
    _layout(
        fig,
        "Hyper-parameter importance of the objective",
        barmode="group",
        xaxis={"title": "importance (normalised)", "range": [0, 1]},
        height=max(300, 40 * len(order) + 140),
    )
    return fig


def curves_figure(
    curves: pd.DataFrame, metric: str, trial_ids: Sequence[str], labels: dict[str, str]
) -> go.Figure | None:
    """Learning curves of one metric for the given trials."""
    if curves.empty or metric not in set(curves["metric"]):
        return None
    part = curves[(curves["metric"] == metric) & curves["trial_id"].isin(list(trial_ids))]
    fig = go.Figure()
    for i, tid in enumerate(trial_ids):
        one = part[part["trial_id"] == tid]
        if one.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=one["iteration"].to_numpy(),
                y=one["value"].to_numpy(dtype=float),
                mode="lines+markers",
                name=esc(labels.get(tid, tid)),
                line={"color": color(i)},
                hovertemplate=f"{esc(labels.get(tid, tid))}<br>iteration %{{x}}: %{{y:.4f}}"
                "<extra></extra>",
            )
        )
    _layout(
        fig,
        f"Learning curves: {esc(metric)}",
        xaxis={"title": "iteration"},
        yaxis={"title": esc(metric)},
        height=440,
    )
    return fig


def pareto_figure(
    points: pd.DataFrame, max_dominated: int = 500, seed: int = 0
) -> go.Figure | None:
    """Pareto fronts of accuracy against MACs and parameters; a menu picks the resolution.

    Args:
        points: Output of :func:`analysis.pareto.pareto_table`.
        max_dominated: Dominated points drawn per resolution, cost kind and path (a seeded
            random subset beyond that, so that 10,000-trial sweeps stay responsive; front
            points are always drawn).
        seed: Seed of that subset.
    """
    if points.empty:
        return None
    resolutions = sorted(points["resolution"].unique())
    fig = make_subplots(rows=1, cols=2, subplot_titles=("MACs per probe", "parameters"))
    rng = np.random.default_rng(seed)
    buttons = []
    per_res: list[int] = []
    for r in resolutions:
        count = 0
        for col, kind in ((1, "macs"), (2, "params")):
            scale = 1e9 if kind == "macs" else 1e6
            sub = points[(points["resolution"] == r) & (points["cost_kind"] == kind)]
            for j, path in enumerate(("method", "branch", "upsample")):
                one = sub[sub["path"] == path]
                if one.empty:
                    continue
                dominated = one[~one["on_front"]]
                if len(dominated) > max_dominated:
                    dominated = dominated.iloc[
                        np.sort(rng.choice(len(dominated), max_dominated, replace=False))
                    ]
                front = one[one["on_front"]].sort_values("cost")
                for part, is_front in ((dominated, False), (front, True)):
                    if part.empty:
                        continue
                    fig.add_trace(
                        go.Scatter(
                            x=part["cost"].to_numpy(dtype=float) / scale,
                            y=part["accuracy"].to_numpy(dtype=float),
                            # Front points are named on the plot when few (ablations).
                            mode=(
                                ("lines+markers+text" if len(part) <= 12 else "lines+markers")
                                if is_front
                                else "markers"
                            ),
                            # Names above their points, drawn past the axes when a point
                            # sits at an edge.
                            textposition="top center",
                            cliponaxis=False,
                            line={"shape": "hv", "color": color(j)} if is_front else None,
                            marker={
                                "color": color(j),
                                "size": 9 if is_front else 6,
                                "opacity": 1.0 if is_front else 0.35,
                            },
                            name=f"{path}{' front' if is_front else ''}",
                            legendgroup=f"{path}{is_front}",
                            showlegend=col == 1,
                            visible=bool(r == resolutions[0]),
                            text=[esc(x) for x in part["label"]],
                            customdata=part["n"].to_numpy(),
                            hovertemplate=(
                                f"%{{text}} ({path})<br>{kind}: %{{x:.4g}}"
                                f"{'G' if kind == 'macs' else 'M'}<br>accuracy {HR}&{r}: "
                                "%{y:.4f}<br>n=%{customdata}<extra></extra>"
                            ),
                        ),
                        row=1,
                        col=col,
                    )
                    count += 1
        per_res.append(count)
    total = sum(per_res)
    start = 0
    for r, count in zip(resolutions, per_res, strict=True):
        visible = [start <= k < start + count for k in range(total)]
        buttons.append({"label": f"probe {r}", "method": "update", "args": [{"visible": visible}]})
        start += count
    _layout(
        fig,
        f"Pareto front: accuracy {HR}&r against cost",
        updatemenus=[
            {"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.18, "yanchor": "top"}
        ],
        height=460,
    )
    # From zero: a 0.01% difference in parameters must not look like a factor.
    fig.update_xaxes(title_text="GMACs", rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title_text="M parameters", rangemode="tozero", row=1, col=2)
    fig.update_yaxes(tickformat=".1%")
    fig.update_yaxes(title_text="accuracy", row=1, col=1)
    return fig


def progress_figure(trials: pd.DataFrame, objective: str | None, mode: str) -> go.Figure | None:
    """The objective of each trial by the time it ended, with the best so far."""
    if objective is None or "end_time" not in trials.columns:
        return None
    done = completed(trials, objective).dropna(subset=["end_time"]).sort_values("end_time")
    if done.empty:
        return None
    y = done[objective].to_numpy(dtype=float)
    best = np.maximum.accumulate(y) if mode == "max" else np.minimum.accumulate(y)
    label = done["variant"].fillna("") if "variant" in done else pd.Series("", index=done.index)
    text = [esc(f"{t} ({v})" if v else t) for t, v in zip(done["trial_id"], label, strict=True)]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=done["end_time"],
            y=y,
            mode="markers",
            name="trial",
            marker={"size": 6, "color": color(0), "opacity": 0.7},
            text=text,
            hovertemplate="%{text}<br>ended %{x}<br>%{y:.4f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=done["end_time"],
            y=best,
            mode="lines",
            name="best so far",
            line={"shape": "hv", "color": color(1)},
            hoverinfo="skip",
        )
    )
    _layout(
        fig,
        f"Trials as they ended: {esc(objective.removeprefix('final_'))}",
        xaxis={"title": "end time (UTC)"},
        yaxis={"title": esc(objective.removeprefix("final_"))},
        height=400,
    )
    return fig
