"""Item 6: the result store against Ray's ExperimentAnalysis, and the dashboard, by study size.

**Store.** At 1,000, 10,000 and 100,000 trials (ten studies, half ablations and half sweeps, of
:mod:`analysis.synthetic_store`, with learning curves), one filter-and-group query::

    completed trials with acc 112&14 > 0.9, grouped by study and variant:
    count, mean acc 112&7, mean branch gain at 7&7, total GPU hours

is answered two ways and timed, each as the median of several runs:

* **btnet-lab**: :func:`analysis.store.sql` over the Parquet store (target: 100,000 trials
  under 1 s). Also timed, as before: :func:`~analysis.store.read_trials` with filters and
  pandas, ``list_studies``, a raw DuckDB glob, and one :func:`~analysis.store.write_trial`.
* **Ray**: the same ten studies written as Ray Tune experiment directories, then
  ``ExperimentAnalysis(dir).dataframe()`` per study, concatenated, and the same filter and
  group in pandas. This is what a Ray Tune user does to answer the question from the files
  Tune leaves behind.

Both answers are compared group by group; a difference stops the benchmark (it would mean the
two sides did not hold the same study).

The Ray directories are what Tune 2.x writes and ExperimentAnalysis reads: one
``experiment_state-<date>.json`` per study whose ``trial_data`` holds, per trial, the JSON
state of a ``ray.tune.experiment.Trial`` and its run metadata (made by Ray's own
``Trial.get_json_state`` after ``Trial.update_last_result``, so the per-metric statistics Tune
keeps are there too); and one folder per trial with ``params.json`` and ``result.json`` (one
JSON line per reported interval, with Tune's automatic fields and the config, as Tune's JSON
logger writes it). Each line reports every metric, as btnet-lab's trainable does; the
synthetic study has curves only for acc 112&7 and the loss, so the other metrics carry their
final values on every line (only the last line enters the query). Not written, because
ExperimentAnalysis does not read them when ``result.json`` exists: ``progress.csv``,
TensorBoard events, ``params.pkl``, checkpoints. The runner's own state in the experiment file
is left minimal (ExperimentAnalysis does not read it either).

**Dashboard.** :func:`analysis.dashboard.build_report` and rendering to HTML, with the page's
size, for a sweep and an ablation of 1,000 and 10,000 trials.

Run::

    .venv/bin/python -m bench.store [--quick] [--sizes 1000 10000 100000] \\
        [--ray-sizes 1000 10000] [--dashboard 1000 10000] [--runs 5] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.dashboard import build_report, render_html
from analysis.store import config_key, list_studies, read_trials, sql, write_trial
from analysis.synthetic_store import ablation_rows, generate_store, sweep_rows
from bench._common import (
    Timing,
    base_parser,
    cpu_timer,
    human_bytes,
    load_average,
    machine_info,
    machine_markdown,
    markdown_table,
    measure,
    run_cli,
    section_heading,
    setup_logging,
    summarize,
    write_section,
)
from btnet_core.errors import ConfigError

log = logging.getLogger(__name__)

#: The query, in the store's SQL. The Ray side does the same in pandas (:func:`ray_query`).
QUERY = (
    "select study, variant, count(*) as n, avg(final_acc_112_7) as acc, "
    "avg(final_acc_7_7_branch - final_acc_7_7_upsample) as gain, sum(gpu_hours) as gpu "
    "from trials where status = 'completed' and final_acc_112_14 > 0.9 "
    "group by study, variant order by acc desc"
)
TARGET_S = 1.0
TARGET_TRIALS = 100_000
STUDIES = 10
#: Keys btnet-lab's trainable adds to every Tune report (ablations/trainable.py).
BTNET_STATUS = "btnet_status"
#: Time one Ray trial folder is written at (its name and ``date`` fields).
_DATE = "2025-03-01_09-00-00"


@dataclass(frozen=True)
class Plan:
    """Sizes and repeats of one run."""

    sizes: tuple[int, ...]
    ray_sizes: tuple[int, ...]
    dashboard: tuple[int, ...]
    runs: int
    dashboard_runs: int


FULL = Plan((1_000, 10_000, 100_000), (1_000, 10_000), (1_000, 10_000), 5, 2)
QUICK = Plan((100,), (100,), (50,), 2, 1)


@dataclass
class SizeResult:
    """Everything measured at one store size."""

    trials: int
    generate_s: float
    sql_first_s: float
    sql: Timing
    pandas: Timing
    one_study: Timing
    list_studies: Timing
    raw_duckdb: Timing
    write_trial_s: float
    store_bytes: int
    ray: RayResult | None = None


@dataclass
class RayResult:
    """ExperimentAnalysis over the same studies."""

    write_s: float
    bytes: int
    files: int
    load: Timing  # ExperimentAnalysis(...) of every study
    query: Timing  # dataframe() + concat + filter + group
    total: Timing  # both, as one call
    state_bytes: int  # experiment_state-*.json files alone


@dataclass
class DashResult:
    """Dashboard of one study size."""

    trials: int
    build_sweep: Timing
    render_sweep: Timing
    html_sweep: int
    build_ablation: Timing
    html_ablation: int


# ---------------------------------------------------------------------------------------------
# The studies


def study_specs(trials: int) -> list[tuple[str, int, int]]:
    """(kind, trials, seed) of the ten studies of a store of ``trials`` trials."""
    per = max(1, trials // STUDIES)
    return [("ablation" if i % 2 == 0 else "sweep", per, i) for i in range(STUDIES)]


def study_rows(kind: str, n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """The rows and curves :func:`generate_store` writes for the same arguments."""
    fn = ablation_rows if kind == "ablation" else sweep_rows
    return fn(n, seed, None, 0.02, True)


def generate(root: Path, trials: int) -> None:
    """The btnet-lab store: ten studies, with learning curves, in batch files."""
    for kind, n, seed in study_specs(trials):
        generate_store(root, n, kind=kind, seed=seed, with_curves=True)


def _size_on_disk(root: Path) -> tuple[int, int]:
    total, files = 0, 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            total += os.path.getsize(os.path.join(dirpath, name))
            files += 1
    return total, files


# ---------------------------------------------------------------------------------------------
# btnet-lab side


def store_timings(
    root: Path, trials: int, runs: int, generate_s: float
) -> tuple[SizeResult, pd.DataFrame]:
    """Time the store's readers on a generated store; also return the query's answer (taken
    before :func:`write_trial` adds its own small study)."""
    start = time.perf_counter()
    answer = sql(root, QUERY)  # first call: file schemas not cached yet
    first = time.perf_counter() - start
    timed = measure(lambda: sql(root, QUERY), runs, warmup=0)

    def pandas_query() -> object:
        df = read_trials(
            root,
            columns=["study", "variant", "final_acc_112_7", "gpu_hours"],
            filters=[("status", "==", "completed"), ("final_acc_112_14", ">", 0.9)],
        )
        return df.groupby(["study", "variant"], dropna=False)["final_acc_112_7"].mean()

    raw = (
        "select study, count(*), avg(final_acc_112_7) from "
        f"read_parquet('{root}/trials/**/*.parquet', union_by_name=true) "
        "where status = 'completed' group by study"
    )
    import duckdb

    one_study = study_rows("sweep", 1, 1)[0][0]["study"]
    result = SizeResult(
        trials=trials,
        generate_s=generate_s,
        sql_first_s=first,
        sql=timed,
        pandas=measure(pandas_query, runs, warmup=0),
        one_study=measure(lambda: read_trials(root, one_study), runs, warmup=0),
        list_studies=measure(lambda: list_studies(root), runs, warmup=0),
        raw_duckdb=measure(lambda: duckdb.connect().execute(raw).fetchall(), runs, warmup=0),
        write_trial_s=_write_latency(root),
        store_bytes=_size_on_disk(root)[0],
    )
    return result, answer


def _write_latency(root: Path, n: int = 20) -> float:
    """Mean time of :func:`write_trial` (one trial with curves, fsync, cleanup) in a sweep."""
    rows, points = sweep_rows(n, seed=99, study="latency")
    by_trial: dict[str, list[dict]] = {}
    for p in points:
        by_trial.setdefault(p.pop("trial_id"), []).append(p)
    start = time.perf_counter()
    for row in rows:
        write_trial(root, row, by_trial.get(row["trial_id"], []))
    return (time.perf_counter() - start) / len(rows)


# ---------------------------------------------------------------------------------------------
# Ray side


def _nested_config(row: Mapping[str, Any]) -> dict[str, Any]:
    """The trial's config as Tune holds it (nested), rebuilt from the row's ``cfg_`` columns."""
    config: dict[str, Any] = {}
    for column, value in row.items():
        if not column.startswith("cfg_"):
            continue
        if isinstance(value, str) and value.startswith("["):
            value = json.loads(value)
        node = config
        *parents, leaf = config_key(column).split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    if row.get("variant") is not None:  # an ablation's variant is a grid value of its space
        config["variant"] = row["variant"]
    config["seed"] = row["seed"]
    return config


def _metrics(row: Mapping[str, Any]) -> dict[str, Any]:
    """What btnet-lab's trainable reports: the final metrics and costs, unprefixed."""
    out: dict[str, Any] = {}
    for column, value in row.items():
        if column.startswith("final_"):
            out[column[len("final_") :]] = value
        elif column.startswith(("macs_", "params_", "branch_params_")):
            out[column] = value
    return out


def _results(row: Mapping[str, Any], curve: list[dict], trial_id: str, config: dict) -> list[dict]:
    """The lines of a trial's result.json, as Tune writes them for btnet-lab's reports."""
    status = row["status"]
    if status == "error":
        return []  # the trial raised before its first report; Tune writes error.txt instead
    final = _metrics(row)
    iterations = int(row["iterations"]) if status == "completed" else 1
    by_iter: dict[int, dict[str, float]] = {}
    for p in curve:
        by_iter.setdefault(int(p["iteration"]), {})[p["metric"]] = p["value"]
    wall = float(row["wall_time_s"])
    start = row["start_time"].timestamp()
    lines = []
    for it in range(1, iterations + 1):
        last = it == iterations
        result = dict(final)
        if not last:
            result.update(by_iter.get(it, {}))
        result.update(
            {
                "btnet_done": int(last),
                BTNET_STATUS: status if last else "running",
                "btnet_error": (row.get("error") or "") if last else "",
                "btnet_trial_id": row["trial_id"],
                "btnet_trunk_hit": int(bool(row.get("trunk_cache_hit"))),
                "btnet_elapsed_s": wall * it / iterations,
                "timestamp": int(start + wall * it / iterations),
                "checkpoint_dir_name": f"checkpoint_{it - 1:06d}",
                "done": last,
                "training_iteration": it,
                "trial_id": trial_id,
                "date": _DATE,
                "time_this_iter_s": wall / iterations,
                "time_total_s": wall * it / iterations,
                "pid": 4242,
                "hostname": "worker-0",
                "node_ip": "10.0.0.2",
                "config": config,
                "time_since_restore": wall * it / iterations,
                "iterations_since_restore": it,
            }
        )
        lines.append(result)
    return lines


def write_ray_experiment(root: Path, kind: str, n: int, seed: int) -> str:
    """Write one study as a Ray Tune experiment directory under ``root``; returns its name."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.execution.placement_groups import PlacementGroupFactory
    from ray.tune.experiment import Trial

    rows, curves = study_rows(kind, n, seed)
    study = rows[0]["study"]
    by_trial: dict[str, list[dict]] = {}
    for c in curves:
        by_trial.setdefault(c["trial_id"], []).append(c)
    exp = root / study
    exp.mkdir(parents=True)
    storage = StorageContext(storage_path=str(root), experiment_dir_name=study)
    prefix = hashlib.sha1(study.encode()).hexdigest()[:5]
    trial_data = []
    for i, row in enumerate(rows):
        trial_id = f"{prefix}_{i:05d}"
        config = _nested_config(row)
        dirname = f"btnet_trial_{trial_id}_{i}_{_DATE}"
        trial_storage = copy.copy(storage)
        trial_storage.trial_dir_name = dirname
        trial = Trial(
            "btnet_trial",
            stub=True,
            config=config,
            trial_id=trial_id,
            storage=trial_storage,
            experiment_tag=str(i),
            # The synthetic studies book 8 CPUs and one GPU per trial (cpu_hours, gpu_hours).
            placement_group_factory=PlacementGroupFactory([{"CPU": 8, "GPU": 1}]),
            evaluated_params={k: v for k, v in config.items() if not isinstance(v, dict)},
        )
        trial.create_placement_group_factory()  # as Tune does once the config is resolved
        lines = _results(row, by_trial.get(row["trial_id"], []), trial_id, config)
        folder = exp / dirname
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps(config, indent=2))
        with open(folder / "result.json", "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        if row["status"] == "error":
            (folder / "error.txt").write_text(str(row.get("error")) + "\n")
        for line in lines:
            trial.update_last_result(dict(line))
        trial.set_status(Trial.ERROR if row["status"] == "error" else Trial.TERMINATED)
        trial_data.append(list(trial.get_json_state()))
    state = {
        "trial_data": trial_data,
        "runner_data": {"_session_str": _DATE},
        "stats": {"start_time": rows[0]["start_time"].timestamp()},
    }
    with open(exp / f"experiment_state-{_DATE}.json", "w") as f:
        json.dump(state, f)
    return study


def write_ray_store(root: Path, trials: int, parallel: bool = True) -> float:
    """All ten studies as Ray experiments (a process per core when ``parallel``: writing is
    set-up, not what is measured); returns the seconds it took."""
    start = time.perf_counter()
    jobs = [(root, *s) for s in study_specs(trials)]
    workers = min(len(jobs), len(os.sched_getaffinity(0))) if parallel else 1
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs))
    else:
        for job in jobs:
            _write_one(job)
    return time.perf_counter() - start


def _write_one(args: tuple[Path, str, int, int]) -> str:
    logging.getLogger("ray").setLevel(logging.ERROR)
    return write_ray_experiment(*args)


def ray_load(root: Path) -> dict[str, Any]:
    """``ExperimentAnalysis`` of every study under ``root``."""
    from ray.tune import ExperimentAnalysis

    return {p.name: ExperimentAnalysis(str(p)) for p in sorted(root.iterdir()) if p.is_dir()}


def ray_query(analyses: Mapping[str, Any]) -> pd.DataFrame:
    """The filter-and-group of :data:`QUERY`, in pandas over ExperimentAnalysis frames."""
    frames = []
    for study, analysis in analyses.items():
        df = analysis.dataframe()
        df["study"] = study
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    if "config/variant" not in df:
        df["config/variant"] = None
    df = df[(df[BTNET_STATUS] == "completed") & (df["acc_112_14"] > 0.9)]
    df = df.assign(
        gain=df["acc_7_7_branch"] - df["acc_7_7_upsample"],
        gpu=df["time_total_s"] / 3600,  # one GPU per trial, as the synthetic study assumes
    )
    out = (
        df.groupby(["study", "config/variant"], dropna=False)
        .agg(
            n=("trial_id", "size"),
            acc=("acc_112_7", "mean"),
            gain=("gain", "mean"),
            gpu=("gpu", "sum"),
        )
        .reset_index()
        .rename(columns={"config/variant": "variant"})
    )
    return out.sort_values("acc", ascending=False, ignore_index=True)


def check_same(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Both sides must give the same groups, counts and means (else the benchmark is wrong)."""

    def keyed(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df["variant"] = df["variant"].astype(object).where(df["variant"].notna(), "")
        return df.set_index(["study", "variant"]).sort_index()[["n", "acc", "gain", "gpu"]]

    a, b = keyed(ours), keyed(theirs)
    same = a.index.equals(b.index) and (a["n"].to_numpy() == b["n"].to_numpy()).all()
    if same:
        same = np.allclose(
            a[["acc", "gain", "gpu"]].to_numpy(float),
            b[["acc", "gain", "gpu"]].to_numpy(float),
            rtol=1e-9,
            atol=1e-9,
        )
    if not same:
        raise RuntimeError(
            "bench.store: btnet-lab and Ray answered the query differently; the two sides do "
            f"not hold the same study:\n{a}\n{b}"
        )


def ray_timings(root: Path, trials: int, runs: int, ours: pd.DataFrame) -> RayResult:
    """Write the Ray side of a store size and time ExperimentAnalysis on it; the first run's
    answer is checked against btnet-lab's."""
    log.info("ray: writing %d trials as %d Tune experiments", trials, STUDIES)
    write_s = write_ray_store(root, trials, parallel=trials >= 1_000)
    size, files = _size_on_disk(root)
    state = sum(p.stat().st_size for p in root.glob("*/experiment_state-*.json"))
    log.info("ray: timing ExperimentAnalysis (%d runs)", runs)
    loads, queries, totals = [], [], []
    for i in range(runs):
        start = time.perf_counter()
        analyses = ray_load(root)
        mid = time.perf_counter()
        theirs = ray_query(analyses)
        end = time.perf_counter()
        del analyses
        if i == 0:
            check_same(ours, theirs)
        loads.append(mid - start)
        queries.append(end - mid)
        totals.append(end - start)
    return RayResult(
        write_s, size, files, summarize(loads), summarize(queries), summarize(totals), state
    )


# ---------------------------------------------------------------------------------------------
# Dashboard


def dashboard_timings(n: int, runs: int, workdir: Path) -> DashResult:
    """Build and render a sweep's and an ablation's dashboard of ``n`` trials."""
    root = Path(tempfile.mkdtemp(prefix="dash-", dir=workdir))
    try:
        sweep = generate_store(root, n, kind="sweep", seed=1)
        ablation = generate_store(root, n, kind="ablation", seed=2)
        build, report = _builds(root, sweep, runs)
        render = measure(lambda: render_html(report), runs, warmup=0)
        html_sweep = len(render_html(report).encode())
        build_abl, report_abl = _builds(root, ablation, runs)
        html_abl = len(render_html(report_abl).encode())
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return DashResult(n, build, render, html_sweep, build_abl, html_abl)


def _builds(root: Path, study: str, runs: int) -> tuple[Timing, Any]:
    """Time ``runs`` builds of a study's report; return the timing and the last report."""
    times, report = [], None
    for _ in range(runs):
        start = time.perf_counter()
        report = build_report(root, study)
        times.append(time.perf_counter() - start)
    return summarize(times), report


# ---------------------------------------------------------------------------------------------
# Report


def _s(t: Timing | float) -> str:
    if isinstance(t, Timing):
        if t.n == 1:
            return f"{_fmt(t.median)} (1 run)"
        return f"{_fmt(t.median)} (IQR {_fmt(t.iqr)})"
    return _fmt(t)


def _fmt(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _extrapolate(results: Sequence[SizeResult]) -> tuple[int, float, float, float] | None:
    """Ray at the largest store size from its per-trial cost at its largest measured size.

    Returns (trials, load+query seconds, bytes, write seconds), or None when Ray ran there.
    """
    measured = [r for r in results if r.ray is not None]
    if not measured or results[-1].ray is not None:
        return None
    base = measured[-1]
    factor = results[-1].trials / base.trials
    return (
        results[-1].trials,
        base.ray.total.median * factor,
        base.ray.bytes * factor,
        base.ray.write_s * factor,
    )


def render(
    plan: Plan,
    results: Sequence[SizeResult],
    dashes: Sequence[DashResult],
    info: dict[str, Any],
    load_end: float,
) -> str:
    """The Markdown section."""
    head = [
        "trials",
        "btnet-lab `sql` (first call)",
        "btnet-lab `sql`",
        "Ray: ExperimentAnalysis load",
        "Ray: dataframe + pandas",
        "Ray: total",
        "Ray / btnet-lab",
        "on disk btnet-lab / Ray",
    ]
    rows = []
    for r in results:
        if r.ray is not None:
            ray = [_s(r.ray.load), _s(r.ray.query), _s(r.ray.total)]
            ratio = f"**{r.ray.total.median / r.sql.median:.0f}x**"
            disk = f"{human_bytes(r.store_bytes)} / {human_bytes(r.ray.bytes)}"
        else:
            ray, ratio, disk = ["not run", "", ""], "", f"{human_bytes(r.store_bytes)} / -"
        rows.append([r.trials, _s(r.sql_first_s), f"**{_s(r.sql)}**", *ray, ratio, disk])
    extra = _extrapolate(results)
    if extra is not None:
        n, seconds, size, write = extra
        biggest = results[-1]
        rows.append(
            [
                n,
                "",
                "",
                "",
                "",
                f"~{_fmt(seconds)} (extrapolated)",
                f"~{seconds / biggest.sql.median:.0f}x",
                f"{human_bytes(biggest.store_bytes)} / ~{human_bytes(size)}",
            ]
        )
    main_table = markdown_table(head, rows)

    other = markdown_table(
        [
            "trials",
            "generate",
            "`read_trials` + pandas",
            "`read_trials` one study",
            "`list_studies`",
            "raw DuckDB glob",
            "`write_trial` (one)",
        ],
        [
            [
                r.trials,
                _s(r.generate_s),
                _s(r.pandas),
                _s(r.one_study),
                _s(r.list_studies),
                _s(r.raw_duckdb),
                _s(r.write_trial_s),
            ]
            for r in results
        ],
    )
    dash_table = markdown_table(
        [
            "trials",
            "build, sweep",
            "render, sweep",
            "HTML, sweep",
            "build, ablation",
            "HTML, ablation",
        ],
        [
            [
                d.trials,
                _s(d.build_sweep),
                _s(d.render_sweep),
                human_bytes(d.html_sweep),
                _s(d.build_ablation),
                human_bytes(d.html_ablation),
            ]
            for d in dashes
        ],
    )
    notes = _target_note(results)
    if extra is not None:
        n, seconds, size, write = extra
        notes.append(
            f"- Ray at {n:,} trials is extrapolated linearly from its per-trial cost at "
            f"{[r for r in results if r.ray][-1].trials:,} (ExperimentAnalysis reads one "
            "result.json per trial and decodes every trial's JSON state, so its cost grows with "
            f"the trial count): writing it would take ~{_fmt(write)} and ~{human_bytes(size)} "
            f"of {n:,} folders, and one load ~{_fmt(seconds)}, which does not fit the benchmark's "
            "few-minute budget on this machine. Run it with `--ray-sizes 100000` to measure."
        )
    ray_sized = [r for r in results if r.ray is not None]
    if ray_sized:
        r = ray_sized[-1]
        notes.append(
            f"- Where Ray's time goes at {r.trials:,} trials: "
            f"{r.ray.load.median / r.ray.total.median:.0%} in `ExperimentAnalysis(...)` "
            f"(decoding {human_bytes(r.ray.state_bytes)} of experiment-state JSON, with "
            "cloudpickled fields per trial, and parsing every trial's result.json into a "
            f"DataFrame: {r.ray.files:,} files), the rest in `dataframe()` and pandas. "
            "btnet-lab reads a few columns of a few Parquet files and lets DuckDB filter and "
            "group them."
        )
    return (
        section_heading("store")
        + machine_markdown(info, load_end)
        + "Ten studies per size (half ablations, half sweeps of `analysis.synthetic_store`, "
        "about 120 columns and two learning curves per trial). Query: completed trials with "
        "acc 112&14 > 0.9, grouped by study and variant: count, mean acc 112&7, mean branch "
        "gain at 7&7, total GPU hours; the same answer on both sides is checked group by "
        f"group. btnet-lab: median (IQR) of {plan.runs} runs; Ray: of 3 runs at up to 1,000 "
        "trials, one run above (a load of 10,000 Ray trials takes about a minute here). First "
        "call = the process's first query on "
        "that store (file schemas not cached; the OS file cache is warm on both sides, the "
        "files having just been written). Ray: `ExperimentAnalysis(dir).dataframe()` per study "
        "+ pandas, over the directories Tune 2.x writes (see `bench/store.py`).\n\n"
        + main_table
        + "\n"
        + "\n".join(notes)
        + "\n\nOther store operations (median, IQR):\n\n"
        + other
        + "\nDashboard: `build_report` (read, statistics, importance, figures) and `render_html`"
        " of one study; HTML size with plotly.js embedded:\n\n" + dash_table
    )


def _target_note(results: Sequence[SizeResult]) -> list[str]:
    at = [r for r in results if r.trials >= TARGET_TRIALS]
    if not at:
        return [
            f"- Target ({TARGET_TRIALS:,} trials under {TARGET_S:g} s): not measured in this "
            "run (sizes below it)."
        ]
    r = at[0]
    met = r.sql.median < TARGET_S and r.sql_first_s < TARGET_S
    verdict = "met" if met else "MISSED"
    return [
        f"- Target ({TARGET_TRIALS:,} trials under {TARGET_S:g} s): **{verdict}**: "
        f"{_s(r.sql.median)} median, {_s(r.sql_first_s)} for the first call, at "
        f"{r.trials:,} trials."
    ]


def _sizes(values: Iterable[int], flag: str) -> tuple[int, ...]:
    out = tuple(values)
    for v in out:
        if v < STUDIES:
            raise ConfigError(f"{flag}: {v} is too small; allowed: {STUDIES} trials or more")
    return tuple(sorted(out))


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the tables and write the ``store`` section of BENCHMARKS.md."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", help="store sizes (trials)")
    parser.add_argument("--ray-sizes", type=int, nargs="*", help="sizes also measured with Ray")
    parser.add_argument("--dashboard", type=int, nargs="*", help="dashboard sizes (trials)")
    parser.add_argument("--runs", type=int, default=None, help="runs per timing (median)")
    parser.add_argument(
        "--workdir", default=None, help="where the stores are generated (default: a temp dir)"
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    logging.getLogger("ray").setLevel(logging.ERROR)
    plan = _plan(args)
    info = machine_info()
    base = Path(args.workdir) if args.workdir else None
    if base is not None and not base.is_dir():
        raise ConfigError(f"--workdir {base}: not a folder")
    work = Path(tempfile.mkdtemp(prefix="btnet-bench-store-", dir=base))
    try:
        results = []
        for trials in plan.sizes:
            root = work / f"store-{trials}"
            log.info("btnet-lab: generating %d trials (%d studies)", trials, STUDIES)
            generate_s = cpu_timer(lambda root=root, trials=trials: generate(root, trials))
            result, ours = store_timings(root, trials, plan.runs, generate_s)
            log.info("btnet-lab: sql at %d trials: %s", trials, _s(result.sql))
            if trials in plan.ray_sizes:
                # One load of 10,000 Ray trials takes about a minute here: three runs at
                # 1,000 trials, one above.
                ray_runs = min(plan.runs, 3) if trials <= 1_000 else 1
                result.ray = ray_timings(work / f"ray-{trials}", trials, ray_runs, ours)
                log.info("ray: total at %d trials: %s", trials, _s(result.ray.total))
                shutil.rmtree(work / f"ray-{trials}", ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)
            results.append(result)
        dashes = []
        for n in plan.dashboard:
            log.info("dashboard: %d trials", n)
            dashes.append(dashboard_timings(n, plan.dashboard_runs, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    body = render(plan, results, dashes, info, load_average())
    print(body)
    write_section("store", body, args.output)


def _plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    runs = args.runs if args.runs is not None else plan.runs
    if runs < 1:
        raise ConfigError(f"--runs: {runs} is not allowed; allowed: 1 or more")
    sizes = _sizes(args.sizes, "--sizes") if args.sizes else plan.sizes
    ray = _sizes(args.ray_sizes, "--ray-sizes") if args.ray_sizes is not None else plan.ray_sizes
    if args.sizes and args.ray_sizes is None:
        ray = tuple(n for n in ray if n in sizes)
    for n in ray:
        if n not in sizes:
            raise ConfigError(
                f"--ray-sizes: {n} is not one of the store sizes; allowed: {list(sizes)}"
            )
    dash = _sizes(args.dashboard, "--dashboard") if args.dashboard is not None else plan.dashboard
    return Plan(sizes, ray, dash, runs, plan.dashboard_runs)


if __name__ == "__main__":
    raise SystemExit(run_cli("bench.store", main, None))
