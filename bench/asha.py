"""Benchmark 5: ASHA against the full grid: the compute each spends to find the grid's best.

Run::

    .venv/bin/python -m bench.asha [--quick] [--tolerance 0.01]

One grid sweep of the real ``btnet_core`` at a tiny size (``stage2.lr`` x
``model.insertion_depth``, one seed, ``acc_112_7`` maximised, every point trained for
``EPOCHS`` stage-2 epochs with an evaluation after each) runs twice through
``ablations.runner.run_study`` on a 2-CPU local Ray, two trials at a time:

* **full grid**: every point trains all its epochs;
* **ASHA**: the same grid with ``scheduler: {type: asha, grace_period: 1, reduction_factor:
  2}``: at epochs 1, 2 and 4 a trial continues only when it is in the top half of the
  trials that reached that epoch so far (Ray Tune's asynchronous successive halving).

Compute is counted in stage-2 epochs trained (each is the same work: the trunk is shared
and trained once in both runs), read from the result store (``final_epoch`` of every trial,
stopped ones included), and converted to CPU seconds with the stage-2 CPU time per epoch
measured inside the grid's trials (:class:`bench._ray.MeasuredCore`). Wall time of each run
(Ray start, the one trunk and the sweep) is shown too.

"Reaching the grid's best" means: the best ``acc_112_7`` among the trials ASHA let finish is
within ``--tolerance`` (absolute accuracy) of the best of the full grid. Both runs use the same
seed, so a configuration that runs to the end scores the same in both; what ASHA can get
wrong is which configurations it lets run to the end. The section also states how far apart
the grid's best points are against the evaluation's own spread (the 10-fold standard
deviation of the accuracy), so the tolerance can be read against the noise.

Known shortcoming: 2 shared cores; compute in epochs is exact, seconds and wall time are not.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from bench._common import (
    base_parser,
    load_average,
    machine_info,
    machine_markdown,
    markdown_table,
    run_cli,
    section_heading,
    setup_logging,
    write_section,
)
from bench._ray import SLOTS_DEFAULT as SLOTS
from bench._ray import MeasuredCore, read_jsonl, run_bench_study
from btnet_core.errors import ConfigError

log = logging.getLogger(__name__)

METRIC = "acc_112_7"
#: Default tolerance: within one percentage point of the grid's best accuracy.
TOLERANCE = 0.01


@dataclass(frozen=True)
class Plan:
    """The grid and its length."""

    lrs: tuple[float, ...]
    depths: tuple[int, ...]
    epochs: int
    pairs: int

    @property
    def points(self) -> int:
        return len(self.lrs) * len(self.depths)


#: 300 pairs: the 10 held-out identities x 6 images hold 150 same-identity pairs, and the
#: evaluation takes as many different-identity pairs.
FULL = Plan(
    lrs=(0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0), depths=(0, 1), epochs=8, pairs=300
)
QUICK = Plan(lrs=(0.001, 0.1), depths=(0,), epochs=2, pairs=60)


def study_text(name: str, plan: Plan, asha: bool) -> str:
    """The grid sweep; ``asha`` adds the scheduler and nothing else."""
    scheduler = "scheduler: {type: asha, grace_period: 1, reduction_factor: 2}\n" if asha else ""
    lrs = ", ".join(f"{x:g}" for x in plan.lrs)
    depths = ", ".join(str(d) for d in plan.depths)
    return (
        f"name: {name}\nkind: sweep\nsearch: grid\nmetric: {METRIC}\nmode: max\nseeds: [0]\n"
        f"concurrency: {SLOTS}\nresources: {{cpus: 1}}\n{scheduler}"
        "base:\n"
        "  model: {width: 0.0625, embedding_size: 32, resolutions: [7]}\n"
        "  data: {identities: 40, images_per_identity: 6, held_out: 10}\n"
        "  stage1: {epochs: 8, batch_size: 16, lr: 0.1}\n"
        f"  stage2: {{epochs: {plan.epochs}, batch_size: 16}}\n"
        f"  eval: {{pairs: {plan.pairs}, folds: 10, resolutions: [7, 112], flip: false}}\n"
        "space:\n"
        f"  stage2.lr: {{grid: [{lrs}]}}\n"
        f"  model.insertion_depth: {{grid: [{depths}]}}\n"
    )


@dataclass
class RunResult:
    """One run of the sweep."""

    mode: str
    trials: pd.DataFrame  # the store's rows
    wall_s: float
    cpu_per_epoch_s: float | None  # stage-2 CPU per epoch, from the completed stage-2 calls

    @property
    def epochs(self) -> int:
        return int(self.trials["final_epoch"].fillna(0).sum())

    @property
    def finished(self) -> pd.DataFrame:
        """Trials trained to the last epoch."""
        top = self.trials["final_epoch"].max()
        return self.trials[self.trials["final_epoch"] == top]

    @property
    def best(self) -> float:
        return float(self.finished[f"final_{METRIC}"].max())


def run_mode(plan: Plan, asha: bool, work: Path) -> RunResult:
    """Run the sweep once; read what it did from the store."""
    from analysis.store import read_trials

    name = "asha" if asha else "grid"
    log_path = str(work / f"{name}.jsonl")
    _, wall, _ = run_bench_study(
        study_text(name, plan, asha),
        f"asha_{name}.yaml",
        work / "store",
        SLOTS,
        core=MeasuredCore(log_path),
        by_value=(sys.modules[__name__],),
    )
    rows = read_trials(str(work / "store"), name)
    stage2 = [r for r in read_jsonl(log_path) if r["stage"] == "branches"]
    per_epoch = sum(r["cpu_s"] for r in stage2) / (len(stage2) * plan.epochs) if stage2 else None
    mode = "ASHA (grace 1, reduction 2)" if asha else f"full grid ({plan.points} x {plan.epochs})"
    return RunResult(mode, rows, wall, per_epoch)


def _point(row: pd.Series) -> str:
    return f"lr {row['cfg_stage2__lr']:g}, depth {int(row['cfg_model__insertion_depth'])}"


def render(
    plan: Plan,
    grid: RunResult,
    asha: RunResult,
    tolerance: float,
    info: dict[str, Any],
    load_end: float,
) -> str:
    """The section."""
    per_epoch = grid.cpu_per_epoch_s or 0.0
    rows = []
    for r in (grid, asha):
        best_row = r.finished.sort_values(f"final_{METRIC}", ascending=False).iloc[0]
        rows.append(
            [
                r.mode,
                len(r.trials),
                len(r.finished),
                r.epochs,
                f"{r.epochs * per_epoch:.0f}",
                f"{r.wall_s:.0f}",
                f"{r.best:.3f}",
                _point(best_row),
            ]
        )
    table = markdown_table(
        [
            "Run",
            "Trials",
            "Run to the end",
            "Stage-2 epochs",
            "Stage-2 CPU (s)",
            "Wall (s)",
            f"Best {METRIC}",
            "Best point",
        ],
        rows,
    )
    gap = grid.best - asha.best
    reached = gap <= tolerance + 1e-12
    ratio = grid.epochs / max(asha.epochs, 1)
    ranked = grid.trials.sort_values(f"final_{METRIC}", ascending=False)
    spread = float(pd.to_numeric(ranked[f"final_{METRIC}_branch_std"]).median())
    top = ", ".join(
        f"{_point(r)}: {r[f'final_{METRIC}']:.3f}" for _, r in ranked.head(3).iterrows()
    )
    verdict = (
        f"ASHA {'reached' if reached else 'did not reach'} the grid's best within "
        f"{tolerance:g} (its best {asha.best:.3f} against {grid.best:.3f}) with "
        f"**{ratio:.2f}x less stage-2 compute** ({asha.epochs} of {grid.epochs} epochs)."
    )
    return (
        section_heading("asha_vs_grid")
        + machine_markdown(info, load_end)
        + f"A grid of {plan.points} points (stage-2 learning rate "
        f"{', '.join(f'{x:g}' for x in plan.lrs)} x branch insertion depth "
        f"{', '.join(str(d) for d in plan.depths)}) of the real btnet_core at a tiny size "
        "(width 0.0625, 40 synthetic identities x 6 images, 10 held out; one trunk trained once "
        f"and shared), {plan.epochs} stage-2 epochs each, {METRIC} on {plan.pairs} held-out "
        f"pairs after every epoch; {SLOTS} trials at a time on a {SLOTS}-CPU local Ray. "
        "Compute is counted in stage-2 epochs (read from the store) and converted with the "
        f"measured {per_epoch:.2f} CPU-s per epoch; wall includes Ray's start and the trunk.\n\n"
        + table
        + "\n"
        + verdict
        + f" The grid's three best points: {top}; the evaluation's own 10-fold standard "
        f"deviation is about {spread:.3f}, so points closer than that are not told apart by "
        "one seed, by the grid or by ASHA.\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the grid with and without ASHA; write the ``asha_vs_grid`` section."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--tolerance",
        type=float,
        default=TOLERANCE,
        help=f"how close to the grid's best counts as reaching it (default {TOLERANCE})",
    )
    args = parser.parse_args(argv)
    if not 0 <= args.tolerance < 1:
        raise ConfigError(f"--tolerance: {args.tolerance} is not allowed; allowed: 0 <= t < 1")
    setup_logging(args.verbose)
    logging.getLogger("ray").setLevel(logging.ERROR)
    plan = QUICK if args.quick else FULL
    info = machine_info()
    work = Path(tempfile.mkdtemp(prefix="btnet-asha-"))
    try:
        results = []
        for asha in (False, True):
            log.info(
                "%s: %d points x %d epochs", "asha" if asha else "grid", plan.points, plan.epochs
            )
            results.append(run_mode(plan, asha, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    grid, asha = results
    for r in results:
        log.info("%s: %d epochs, best %.3f, wall %.0f s", r.mode, r.epochs, r.best, r.wall_s)
    body = render(plan, grid, asha, args.tolerance, info, load_average())
    print(body)
    write_section("asha_vs_grid", body, args.output)


if __name__ == "__main__":
    raise SystemExit(run_cli("bench.asha", main, None))
