"""Paired statistics of ablation studies: each variant against the baseline, seed by seed.

Two runs that share a seed share their data order, initialisation and evaluation folds, so
their difference removes most of the seed-to-seed spread. For every variant, metric and pair
of resolutions this module reports the mean paired difference (variant - baseline), its 95%
t confidence interval, the paired t-test and Wilcoxon signed-rank p-values, and n, with a flag
where the seeds are too few to say anything.

Only completed trials with a finite value take part; a seed is used when both the variant and
the baseline have it. A seed run twice within one variant (two trial ids) is averaged.

No correction for multiple comparisons is applied: with many variants x metrics some p-values
fall under 0.05 by chance. Apply Holm or Benjamini-Hochberg to the returned p-values
(``scipy.stats.false_discovery_control``) when making many claims at once.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.metrics import parse_accuracy
from analysis.store import read_trials
from btnet_core.errors import StoreError

logger = logging.getLogger(__name__)

#: Below this many pairs a comparison is flagged ``too_few``: with 2 pairs the t interval is
#: about +-12.7 standard errors wide, with 1 there is none.
MIN_PAIRS = 3
#: Below this many pairs the two-sided exact Wilcoxon p-value cannot fall below 0.05.
MIN_PAIRS_WILCOXON = 6

COMPARISON_COLUMNS = [
    "variant",
    "baseline",
    "metric",
    "pair",
    "path",
    "n",
    "mean_baseline",
    "mean_variant",
    "mean_diff",
    "ci_low",
    "ci_high",
    "p_ttest",
    "p_wilcoxon",
    "too_few",
    "flag",
]


def paired_summary(
    diffs: Sequence[float], confidence: float = 0.95
) -> dict[str, float | int | str]:
    """Mean, t interval and p-values of paired differences.

    Args:
        diffs: Per-seed differences (variant - baseline), finite.
        confidence: Confidence level of the interval.

    Returns:
        ``n``, ``mean_diff``, ``ci_low``, ``ci_high``, ``p_ttest``, ``p_wilcoxon``, ``flag``
        (empty when nothing is wrong). Undefined quantities are NaN.
    """
    d = np.asarray(diffs, dtype=float)
    n = int(d.size)
    out: dict[str, float | int | str] = {
        "n": n,
        "mean_diff": float(d.mean()) if n else math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "p_ttest": math.nan,
        "p_wilcoxon": math.nan,
        "flag": "",
    }
    if n == 0:
        out["flag"] = "no seed has both the variant and the baseline"
        return out
    if n == 1:
        out["flag"] = "too few seeds (n=1): no interval, no test"
        return out
    sd = float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    t_crit = float(sps.t.ppf(0.5 + confidence / 2.0, n - 1))
    out["ci_low"] = float(d.mean()) - t_crit * se
    out["ci_high"] = float(d.mean()) + t_crit * se
    flags = []
    if sd == 0.0:
        flags.append("identical difference on every seed: tests undefined")
    else:
        # The paired t-test (scipy.stats.ttest_rel) computed directly: a scipy call per
        # comparison costs more than the arithmetic when there are hundreds of them.
        out["p_ttest"] = float(2.0 * sps.t.sf(abs(float(d.mean()) / se), n - 1))
    if np.any(d != 0.0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on ties; the p-value is still right
            try:
                out["p_wilcoxon"] = float(sps.wilcoxon(d).pvalue)
            except ValueError:
                pass
    if n < MIN_PAIRS:
        flags.insert(0, f"too few seeds (n={n}): the interval says almost nothing")
    elif n < MIN_PAIRS_WILCOXON:
        flags.insert(0, f"few seeds (n={n}): Wilcoxon p cannot fall below 0.05")
    out["flag"] = "; ".join(flags)
    return out


def default_metrics(trials: pd.DataFrame) -> list[str]:
    """Metrics to compare: every accuracy metric present (``acc_*``), then ``loss``."""
    names = []
    for col in trials.columns:
        if col.startswith("final_") and trials[col].notna().any():
            name = col[len("final_") :]
            if parse_accuracy(name) is not None:
                names.append(name)
    names.sort(key=_metric_order)
    if "final_loss" in trials.columns and trials["final_loss"].notna().any():
        names.append("loss")
    return names


def _metric_order(name: str) -> tuple[int, int, int, str]:
    parsed = parse_accuracy(name)
    if parsed is None:
        return (9, 0, 0, name)
    return (("method", "branch", "upsample").index(parsed.path), -parsed.a, -parsed.b, name)


def named_baseline(trials: pd.DataFrame) -> str:
    """The baseline the study's rows name (every ablation row does); older rows fall back to
    the variant called ``baseline``."""
    named = trials["baseline"].dropna().unique() if "baseline" in trials.columns else []
    return str(named[0]) if len(named) == 1 else "baseline"


def compare_variants(
    trials: pd.DataFrame,
    baseline: str | None = None,
    metrics: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Every variant against the baseline, paired by seed, per metric.

    Args:
        trials: Trials of one ablation study (columns variant, seed, status, final_*).
        baseline: Baseline variant (default: the variant named ``baseline``).
        metrics: Metric names (``acc_112_7`` or ``final_acc_112_7``); default
            :func:`default_metrics`.
        confidence: Confidence level of the intervals.

    Returns:
        One row per (variant, metric) with :data:`COMPARISON_COLUMNS`.

    Raises:
        StoreError: No variants, an unknown baseline, or an unknown metric.
    """
    if "variant" not in trials.columns or trials["variant"].isna().all():
        raise StoreError("the study has no variants: paired comparisons need an ablation study")
    variants = sorted(str(v) for v in trials["variant"].dropna().unique())
    if baseline is None:
        baseline = named_baseline(trials)
        if baseline not in variants:
            raise StoreError(
                f"no variant named 'baseline'; pass one of: {', '.join(variants)} as the baseline"
            )
    elif baseline not in variants:
        raise StoreError(f"unknown baseline variant {baseline!r}; variants: {', '.join(variants)}")
    names = list(metrics) if metrics is not None else default_metrics(trials)
    names = [m[len("final_") :] if m.startswith("final_") else m for m in names]
    missing = [m for m in names if f"final_{m}" not in trials.columns]
    if missing:
        raise StoreError(f"unknown metric(s): {', '.join(missing)}")
    done = trials[trials["status"] == "completed"]
    cols = [f"final_{m}" for m in names]
    values = done[["variant", "seed", *cols]].copy()
    values[cols] = (
        values[cols].apply(pd.to_numeric, errors="coerce").replace([np.inf, -np.inf], np.nan)
    )
    dup = values.duplicated(["variant", "seed"], keep=False)
    if dup.any():
        logger.warning(
            "%d completed trials share a (variant, seed); their values are averaged",
            int(dup.sum()),
        )
    per_seed = values.groupby(["variant", "seed"])[cols].mean()
    variant_level = per_seed.index.get_level_values("variant")
    base = per_seed[variant_level == baseline].droplevel("variant")
    rows = []
    for variant in variants:
        if variant == baseline:
            continue
        other = per_seed[variant_level == variant].droplevel("variant")
        both = pd.merge(
            base, other, left_index=True, right_index=True, how="inner", suffixes=("_b", "_v")
        )
        for metric, col in zip(names, cols, strict=True):
            pair = both[[f"{col}_b", f"{col}_v"]].dropna().to_numpy(dtype=float)
            summary = paired_summary(pair[:, 1] - pair[:, 0], confidence)
            n = int(summary["n"])
            parsed = parse_accuracy(metric)
            rows.append(
                {
                    "variant": variant,
                    "baseline": baseline,
                    "metric": metric,
                    "pair": parsed.pair if parsed else "",
                    "path": parsed.path if parsed else "",
                    "mean_baseline": float(pair[:, 0].mean()) if n else math.nan,
                    "mean_variant": float(pair[:, 1].mean()) if n else math.nan,
                    "too_few": n < MIN_PAIRS,
                    **summary,
                }
            )
    order = {m: i for i, m in enumerate(names)}
    rows.sort(key=lambda r: (order[str(r["metric"])], str(r["variant"])))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def compare_study(
    root: str | os.PathLike[str],
    study: str,
    baseline: str | None = None,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`compare_variants` on a study read from the store."""
    return compare_variants(read_trials(root, study), baseline, metrics)
