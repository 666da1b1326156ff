"""The few lines a study prints when it ends, read back from the result store.

An ablation: each variant's mean and standard deviation over seeds, and its paired difference
to the baseline (per seed, then averaged). A sweep: the best points by their mean over seeds,
or for several objectives the points no other point beats on all of them (the Pareto front).
Deeper analysis (significance, importance, plots) is the ``analysis`` package's job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ablations.trials import Study


def summary_lines(study: Study, rows: pd.DataFrame, top: int = 5) -> list[str]:
    """Lines describing the study's completed trials (``rows`` from ``read_trials``)."""
    columns = [f"final_{m}" for m in study.metrics]
    if rows.empty or any(c not in rows for c in columns):
        return [f"[{study.name}] no completed trial to summarise"]
    done = rows[rows.status == "completed"]
    if done.empty:
        return [f"[{study.name}] no completed trial to summarise"]
    if study.kind == "ablation":
        return _ablation(study, done)
    return _sweep(study, done, top)


def _ablation(study: Study, done: pd.DataFrame) -> list[str]:
    m = study.metrics[0]
    col = f"final_{m}"
    base = done[done.variant == study.baseline].set_index("seed")[col]
    width = max(len(v) for v in [study.baseline, *study.variants])
    lines = [
        f"[{study.name}] {m} by variant (mean ± sd over seeds; Δ paired with "
        f"{study.baseline} seed by seed):"
    ]
    for name in [study.baseline, *study.variants]:
        values = done[done.variant == name].set_index("seed")[col]
        if values.empty:
            lines.append(f"  {name:<{width}}  no completed seed")
            continue
        text = f"  {name:<{width}}  {_mean_sd(values.tolist())} (n={len(values)})"
        if name != study.baseline:
            common = values.index.intersection(base.index)
            if len(common):
                diffs = (values[common] - base[common]).tolist()
                text += f"  Δ {_mean_sd(diffs, signed=True)} (n={len(common)})"
        lines.append(text)
    return lines


def _sweep(study: Study, done: pd.DataFrame, top: int) -> list[str]:
    from analysis.store import config_column

    keys = [p.key for p in study.space]
    cols = [config_column(k) for k in keys]
    cols = [c for c in cols if c in done]
    objectives = [f"final_{m}" for m in study.metrics]
    points = (
        done.assign(**{c: done[c].astype(str) for c in cols})
        .groupby(cols, dropna=False)[objectives]
        .agg(["mean", "count"])
    )
    means = points.xs("mean", axis=1, level=1)
    counts = points.xs("count", axis=1, level=1).iloc[:, 0]
    if study.multi_objective:
        chosen = [means.index[i] for i in pareto_indices(means.to_numpy().tolist(), study.modes)]
        title = f"Pareto front over {', '.join(study.metrics)} ({len(chosen)} point(s))"
    else:
        chosen = means.sort_values(objectives[0], ascending=study.modes[0] == "min").index[:top]
        title = f"best {len(chosen)} point(s) by {study.metrics[0]}"
    lines = [f"[{study.name}] {title}, mean over seeds:"]
    for idx in list(chosen)[:10]:
        values = idx if isinstance(idx, tuple) else (idx,)
        point = ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=False))
        score = ", ".join(
            f"{m}={means.loc[idx, o]:.4g}" for m, o in zip(study.metrics, objectives, strict=True)
        )
        lines.append(f"  {score}  (n={counts.loc[idx]})  {point}")
    return lines


def pareto_indices(values: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Positions of the rows no other row beats on every objective (NaN rows never count)."""
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    scored = {
        i: [s * v for s, v in zip(signs, row, strict=True)]
        for i, row in enumerate(values)
        if all(math.isfinite(v) for v in row)
    }
    return [
        i
        for i, a in scored.items()
        if not any(
            b != a and all(y >= x for x, y in zip(a, b, strict=True))
            for j, b in scored.items()
            if j != i
        )
    ]


def _mean_sd(values: Sequence[float], signed: bool = False) -> str:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "nan"
    mean = sum(finite) / len(finite)
    sd = (
        math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        if len(finite) > 1
        else 0.0
    )
    return f"{mean:+.4f} ± {sd:.4f}" if signed else f"{mean:.4f} ± {sd:.4f}"
