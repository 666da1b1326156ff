"""A study as Markdown tables, straight from the result store: ``btnet-lab results report``.

What a write-up of an ablation needs, and nothing typed by hand:

* **the matrix**: per variant, the mean over seeds of every "a&b" accuracy of the method's own
  path, with the 95% t half-interval;
* **paired differences**: per variant and setting, the mean difference to the baseline, seed by
  seed, with its 95% interval (:func:`analysis.stats.compare_variants`); a difference whose
  interval excludes zero is marked ``*``;
* **open-set identification** (``osi_*`` metrics of runs with ``eval.openset``): TPIR at FPIR
  0.1 (rank 1), the AUC and the closed-set rank-1 rate per probe resolution, with paired
  differences;
* **cost**: MACs and parameters of each variant's path at each resolution, and what it stores;
* **compute**: trials, CPU-hours and wall time per variant, and the study's wall-clock span.

Every number is read from the store; :func:`study_report` only arranges them. No correction
for multiple comparisons is applied (see :mod:`analysis.stats`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.metrics import HR, parse_accuracy
from analysis.stats import compare_variants, named_baseline
from analysis.store import read_trials
from btnet_core.errors import StoreError

#: Open-set metrics the core writes with ``eval.openset``, and their headings.
OPENSET_METRICS = {
    "osi_tpir": "TPIR@FPIR=0.1 (rank 1)",
    "osi_auc": "AUC (TPIR vs FPIR)",
    "osi_rank1": "closed-set rank-1",
}
_OSI = re.compile(r"final_(osi_[a-z0-9]+)_(\d+)$")


def _completed(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[trials["status"] == "completed"]


def _variants(trials: pd.DataFrame, baseline: str) -> list[str]:
    """The baseline first, then the other variants in the order they first appear."""
    seen = [str(v) for v in dict.fromkeys(trials["variant"].dropna())]
    return [baseline] + [v for v in seen if v != baseline]


def matrix_metrics(trials: pd.DataFrame) -> list[str]:
    """The method-path accuracies present, 112&r (r descending), then r&r, then 112&112."""
    found = []
    for col in trials.columns:
        parsed = parse_accuracy(col) if col.startswith("final_") else None
        if parsed is not None and parsed.path == "method" and trials[col].notna().any():
            found.append(parsed)
    cross = sorted((m for m in found if m.a == HR and m.b != HR), key=lambda m: m.b)
    same = sorted((m for m in found if m.a == m.b and m.a != HR), key=lambda m: m.a)
    top = [m for m in found if m.a == m.b == HR]
    return [m.name for m in cross + same + top]


def openset_metrics(trials: pd.DataFrame) -> list[str]:
    """``osi_*_{r}`` metrics present, by kind then resolution (112 last)."""
    found = []
    for col in trials.columns:
        m = _OSI.fullmatch(col)
        if m and m.group(1) in OPENSET_METRICS and trials[col].notna().any():
            found.append((list(OPENSET_METRICS).index(m.group(1)), int(m.group(2)), col[6:]))
    return [name for _, _, name in sorted(found)]


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean, t half-interval (NaN below 2 values) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(v[0]), math.nan, 1
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return float(v.mean()), half, n


def _label(metric: str) -> str:
    parsed = parse_accuracy(metric)
    if parsed is not None:
        return parsed.pair
    m = re.fullmatch(r"osi_[a-z0-9]+_(\d+)", metric)
    return f"{m.group(1)}x{m.group(1)}" if m else metric


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def means_table(trials: pd.DataFrame, metrics: Sequence[str], variants: Sequence[str]) -> str:
    """Per variant and metric: mean ± 95% half-interval over seeds (completed trials)."""
    done = _completed(trials)
    rows = []
    for v in variants:
        own = done[done["variant"] == v]
        cells = [f"`{v}`", str(len(own))]
        for m in metrics:
            col = f"final_{m}"
            mean, half, n = mean_ci(pd.to_numeric(own[col], errors="coerce").tolist())
            cells.append("n/a" if n == 0 else _fmt(mean) + ("" if n < 2 else f" ± {_fmt(half)}"))
        rows.append(cells)
    return _table(["variant", "seeds", *(_label(m) for m in metrics)], rows)


def differences_table(
    trials: pd.DataFrame, metrics: Sequence[str], baseline: str, variants: Sequence[str]
) -> str:
    """Per variant and metric: mean paired difference to the baseline [95% interval]."""
    comp = compare_variants(trials, baseline, list(metrics))
    rows = []
    for v in variants:
        if v == baseline:
            continue
        own = comp[comp["variant"] == v].set_index("metric")
        cells = [f"`{v}`"]
        for m in metrics:
            r = own.loc[m]
            if int(r["n"]) < 2 or not math.isfinite(float(r["ci_low"])):
                cells.append(f"{float(r['mean_diff']):+.3f} (n={int(r['n'])})")
                continue
            # A difference identical on every seed has a zero-width interval: no evidence.
            spread = float(r["ci_high"]) > float(r["ci_low"])
            star = "*" if spread and (r["ci_low"] > 0 or r["ci_high"] < 0) else ""
            cells.append(
                f"{float(r['mean_diff']):+.3f}{star} [{float(r['ci_low']):+.3f}, "
                f"{float(r['ci_high']):+.3f}]"
            )
        rows.append(cells)
    n = int(comp["n"].max()) if len(comp) else 0
    return (
        _table(["variant - " + baseline, *(_label(m) for m in metrics)], rows)
        + f"\nPaired by seed (n = {n}); [95% t interval]; * the interval excludes 0.\n"
    )


def cost_table(trials: pd.DataFrame, variants: Sequence[str], resolutions: Sequence[int]) -> str:
    """MACs (G) and parameters (M) of each variant's own path, and what it stores."""
    done = _completed(trials)
    rows = []
    for v in variants:
        own = done[done["variant"] == v]
        if own.empty:
            continue
        first = own.iloc[0]
        cells = [f"`{v}`", str(first.get("cfg_method", ""))]
        for kind, scale in (("macs", 1e9), ("params", 1e6)):
            for r in resolutions:
                value = pd.to_numeric(first.get(f"final_{kind}_{r}"), errors="coerce")
                cells.append(_fmt(float(value) / scale, 3 if kind == "macs" else 2))
        stored = pd.to_numeric(first.get("final_storage_params"), errors="coerce")
        if not (isinstance(stored, float) and math.isfinite(stored)):
            stored = pd.to_numeric(first.get(f"final_params_{HR}"), errors="coerce")
        cells.append(_fmt(float(stored) / 1e6, 2))
        rows.append(cells)
    header = [
        "variant",
        "method",
        *(f"GMACs {r}" for r in resolutions),
        *(f"Mparams {r}" for r in resolutions),
        "Mparams stored",
    ]
    return _table(header, rows)


def compute_table(trials: pd.DataFrame, variants: Sequence[str]) -> tuple[str, dict[str, float]]:
    """Trials, CPU-hours and wall per variant; and the totals."""
    rows = []
    for v in variants:
        own = trials[trials["variant"] == v]
        rows.append(
            [
                f"`{v}`",
                str(len(own)),
                str(int((own["status"] == "completed").sum())),
                _fmt(float(own["cpu_hours"].sum()), 3),
                _fmt(float(own["wall_time_s"].median()) / 60, 1),
                str(int(own["trunk_cache_hit"].fillna(False).astype(bool).sum())),
            ]
        )
    start = pd.to_datetime(trials["start_time"], utc=True).min()
    end = pd.to_datetime(trials["end_time"], utc=True).max()
    totals = {
        "trials": float(len(trials)),
        "completed": float((trials["status"] == "completed").sum()),
        "cpu_hours": float(trials["cpu_hours"].sum()),
        "span_min": float((end - start).total_seconds() / 60) if pd.notna(start) else math.nan,
    }
    table = _table(
        ["variant", "trials", "completed", "CPU-h", "median wall (min)", "trunk reused"], rows
    )
    return table, totals


def study_report(root: str | os.PathLike[str], study: str, baseline: str | None = None) -> str:
    """The Markdown report of one ablation study read from the store (see the module docstring).

    Raises:
        StoreError: The study is unknown, is not an ablation, or has no completed trial.
    """
    return trials_report(read_trials(root, study), study, baseline)


def trials_report(trials: pd.DataFrame, study: str, baseline: str | None = None) -> str:
    """:func:`study_report` of trial rows already read (one study's).

    Raises:
        StoreError: Not an ablation, no completed trial, or an unknown baseline.
    """
    if "variant" not in trials.columns or trials["variant"].isna().all():
        raise StoreError(f"study {study!r} has no variants: the report needs an ablation study")
    if _completed(trials).empty:
        raise StoreError(f"study {study!r} has no completed trial yet")
    base = baseline if baseline is not None else named_baseline(trials)
    known = sorted(str(v) for v in trials["variant"].dropna().unique())
    if base not in known:
        raise StoreError(f"unknown baseline variant {base!r}; variants: {', '.join(known)}")
    variants = _variants(trials, base)
    matrix = matrix_metrics(trials)
    resolutions = sorted({int(m.rsplit("_", 1)[1]) for m in matrix})
    seeds = sorted(int(s) for s in trials["seed"].dropna().unique())
    compute, totals = compute_table(trials, variants)
    parts = [
        f"## Study `{study}`\n",
        f"{int(totals['completed'])} of {int(totals['trials'])} trials completed; "
        f"seeds {seeds}; baseline `{base}`; {totals['cpu_hours']:.2f} CPU-hours reserved, "
        f"{totals['span_min']:.0f} min from the first trial's start to the last one's end.\n",
        "### Verification accuracy, the cross-resolution matrix\n",
        "Mean over seeds ± 95% half-interval; each variant through its own path (BTNet: "
        "branch; upsample and multires: resized to 112 for the trunk; separate: the model of "
        "the probe's resolution).\n",
        means_table(trials, matrix, variants),
        "### Paired differences to the baseline\n",
        differences_table(trials, matrix, base, variants),
    ]
    osi = openset_metrics(trials)
    if osi:
        parts.append("### Open-set identification (held-out identities, gallery at 112)\n")
        for kind, title in OPENSET_METRICS.items():
            names = [m for m in osi if m.startswith(kind + "_")]
            if not names:
                continue
            parts += [
                f"**{title}**, probe at each resolution\n",
                means_table(trials, names, variants),
                differences_table(trials, names, base, variants),
            ]
    parts += [
        "### Cost of each variant's path\n",
        cost_table(trials, variants, resolutions),
        "\n### Compute\n",
        compute,
    ]
    return "\n".join(parts)
