"""Benchmarks of the result store and the dashboard (speed targets are measured here, not in
tests).

Run::

    python -m analysis.benchmark --trials 100000 --store /tmp/btnet-bench
    python -m analysis.benchmark --dashboard 1000 10000

The store benchmark generates ``--trials`` trials over ten studies (half ablations, half
sweeps; see :mod:`analysis.synthetic_store`), then times, each as the median of several runs:
a filter-and-group query through :func:`analysis.store.sql` (target: under 1 s at 100,000
trials), the same through :func:`analysis.store.read_trials` and pandas, ``list_studies``, the
raw DuckDB glob of docs/store.md, and the latency of :func:`analysis.store.write_trial`. The
dashboard benchmark times :func:`analysis.dashboard.build_report` plus rendering of one sweep
of each given size.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from analysis.dashboard import build_report, render_html
from analysis.store import list_studies, read_trials, sql, write_trial
from analysis.synthetic_store import generate_store, sweep_rows

QUERY = (
    "select study, variant, count(*) as n, avg(final_acc_112_7) as acc, "
    "avg(final_acc_7_7_branch - final_acc_7_7_upsample) as gain, sum(gpu_hours) as gpu "
    "from trials where status = 'completed' and final_acc_112_14 > 0.9 "
    "group by study, variant order by acc desc"
)


def _median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def store_benchmark(root: Path, trials: int, curves: bool, runs: int) -> list[tuple[str, float]]:
    """Generate a store of ``trials`` trials and time its queries; returns (what, seconds)."""
    results: list[tuple[str, float]] = []
    start = time.perf_counter()
    per_study = trials // 10
    for i in range(10):
        kind = "ablation" if i % 2 == 0 else "sweep"
        generate_store(root, per_study, kind=kind, seed=i, with_curves=curves)
    results.append(
        (f"generate {trials} trials (10 studies, curves={curves})", time.perf_counter() - start)
    )
    results.append(("sql filter-and-group, first call", _median_time(lambda: sql(root, QUERY), 1)))
    results.append(("sql filter-and-group (median)", _median_time(lambda: sql(root, QUERY), runs)))

    def pandas_query() -> object:
        df = read_trials(
            root,
            columns=["study", "variant", "final_acc_112_7", "gpu_hours"],
            filters=[("status", "==", "completed"), ("final_acc_112_14", ">", 0.9)],
        )
        return df.groupby(["study", "variant"], dropna=False)["final_acc_112_7"].mean()

    results.append(("read_trials + pandas groupby (median)", _median_time(pandas_query, runs)))
    results.append(
        (
            "read_trials one study, all columns (median)",
            _median_time(lambda: read_trials(root, "sweep-1"), runs),
        )
    )
    results.append(("list_studies (median)", _median_time(lambda: list_studies(root), runs)))
    raw = (
        "select study, count(*), avg(final_acc_112_7) from "
        f"read_parquet('{root}/trials/**/*.parquet', union_by_name=true) "
        "where status = 'completed' group by study"
    )
    results.append(
        (
            "raw DuckDB glob (median)",
            _median_time(lambda: duckdb.connect().execute(raw).fetchall(), runs),
        )
    )
    rows, points = sweep_rows(50, seed=99, study="latency")
    by_trial: dict[str, list[dict]] = {}
    for p in points:
        by_trial.setdefault(p.pop("trial_id"), []).append(p)
    start = time.perf_counter()
    for row in rows:
        write_trial(root, row, by_trial.get(row["trial_id"], []))
    results.append(("write_trial, mean of 50", (time.perf_counter() - start) / len(rows)))
    return results


def dashboard_benchmark(sizes: list[int], runs: int) -> list[tuple[str, float]]:
    """Time building and rendering a sweep's and an ablation's dashboard at each size."""
    results = []
    for n in sizes:
        results += _dashboard_one(n, runs)
    return results


def _dashboard_one(n: int, runs: int) -> list[tuple[str, float]]:
    root = Path(tempfile.mkdtemp(prefix="btnet-dash-bench-"))
    try:
        sweep = generate_store(root, n, kind="sweep", seed=1)
        ablation = generate_store(root, n, kind="ablation", seed=2)
        build = _median_time(lambda: build_report(root, sweep), runs)
        report = build_report(root, sweep)
        render = _median_time(lambda: render_html(report), runs)
        build_abl = _median_time(lambda: build_report(root, ablation), runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return [
        (f"dashboard build, sweep of {n}", build),
        (f"dashboard render to HTML, sweep of {n}", render),
        (f"dashboard build, ablation of {n}", build_abl),
    ]


def main() -> None:
    """Command line of the benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=0, help="store benchmark size (0: skip)")
    parser.add_argument("--store", default=None, help="where to generate it (default: a temp dir)")
    parser.add_argument("--curves", action="store_true", help="store learning curves too")
    parser.add_argument("--dashboard", type=int, nargs="*", default=[], help="sweep sizes")
    parser.add_argument("--runs", type=int, default=5, help="runs per timing (median)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results: list[tuple[str, float]] = []
    if args.trials:
        root = Path(args.store or tempfile.mkdtemp(prefix="btnet-bench-"))
        if root.exists() and any(root.iterdir()):
            parser.error(f"{root} is not empty")
        try:
            results += store_benchmark(root, args.trials, args.curves, args.runs)
        finally:
            if args.store is None:
                shutil.rmtree(root, ignore_errors=True)
    if args.dashboard:
        results += dashboard_benchmark(args.dashboard, max(1, args.runs // 2))
    width = max((len(w) for w, _ in results), default=10)
    for what, seconds in results:
        print(f"{what.ljust(width)}  {seconds * 1000:10.1f} ms")


if __name__ == "__main__":
    main()
