"""Benchmark 3: what a sweep costs beyond its trials, in btnet-lab, bare Ray Tune and Optuna.

Run::

    .venv/bin/python -m bench.sweep_overhead [--quick] [--trials N] [--seconds D]

The same N trials run through each system. A trial is a fixed amount of real CPU work (a
pure-Python loop, calibrated once on this machine to last about D seconds on one core), done in
``EPOCHS`` equal parts with a report after each part, as a training run reports per epoch. Each
trial measures its own compute (the host clock around the work only); the benchmark measures
the wall time of the whole sweep, Ray's start included (and also stated on its own), and
derives

* overhead per trial = (wall x slots - compute) / N: the slot-seconds not spent on trials,
* efficiency = compute / (wall x slots).

That average holds a fixed cost per sweep (starting Ray's worker processes and the driver's
Tune machinery, shutting down) spread over the N trials, so it depends on N. The **marginal
overhead per trial** does not: the Ray-based systems also run short trials (``MARGINAL_S`` of
work) at two sweep sizes, and the slope of the overhead slot-seconds between them is what one
more trial costs; the intercept is the fixed cost. The efficiency of 30-s trials at the margin
is 30 / (30 + marginal).

The systems:

* **btnet-lab**: ``ablations.runner.run_study`` on a grid sweep of N points, concurrency 2, its
  training core replaced by :class:`SweepCore` (the ``core=`` hook the tests use), whose
  stage 2 does the work and reports through the trainable's callback (with its checkpoint and
  result-store row, as a real study does);
* **Ray Tune**: a function trainable in ``tune.Tuner`` with ``reuse_actors=True`` and
  ``max_concurrent_trials=2``, reporting with ``tune.report`` and no checkpoints;
* **Optuna**: an in-process ``study.optimize`` loop over the same grid. It runs one trial at a
  time, so it has one slot (its overhead is then compared per slot, not per core).

Known shortcoming: the development machine has 2 cores shared with other developers; a busy
neighbour lengthens both the trials and the wall time. Trial compute is measured inside each
trial, so load that slows the work itself is not counted as overhead, but load that delays
Ray's scheduling is.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from bench._ray import append_jsonl, local_ray, read_jsonl, run_bench_study
from btnet_core.errors import ConfigError

log = logging.getLogger(__name__)

#: Reports per trial (a trial's "epochs").
EPOCHS = 5
#: The targets of the issue, for trials of 30 s.
TARGET_OVERHEAD_S = 1.0
TARGET_EFFICIENCY = 0.9


@dataclass(frozen=True)
class Plan:
    """How many trials, and how long each one works."""

    trials: int
    seconds: float


FULL = Plan(trials=8, seconds=30.0)
QUICK = Plan(trials=4, seconds=2.0)
#: The two sweep sizes of the marginal measurement, and the work of each of its trials.
MARGINAL_TRIALS = (8, 24)
QUICK_MARGINAL_TRIALS = (2, 4)
MARGINAL_S = 1.0


@dataclass
class SystemResult:
    """One system's sweep."""

    system: str
    slots: int
    wall_s: float
    ray_start_s: float | None
    compute_s: float
    trials: int

    @property
    def overhead_per_trial_s(self) -> float:
        return (self.wall_s * self.slots - self.compute_s) / self.trials

    @property
    def overhead_after_start_s(self) -> float:
        """Overhead per trial with Ray's start taken out of the wall time."""
        wall = self.wall_s - (self.ray_start_s or 0.0)
        return (wall * self.slots - self.compute_s) / self.trials

    @property
    def efficiency(self) -> float:
        return self.compute_s / (self.wall_s * self.slots)

    @property
    def overhead_total_s(self) -> float:
        """Slot-seconds of the sweep not spent on trial compute."""
        return self.wall_s * self.slots - self.compute_s


@dataclass
class Marginal:
    """One system at two sweep sizes: what one more trial costs, and what a sweep costs."""

    small: SystemResult
    large: SystemResult

    @property
    def per_trial_s(self) -> float:
        extra = self.large.overhead_total_s - self.small.overhead_total_s
        return extra / (self.large.trials - self.small.trials)

    @property
    def fixed_s(self) -> float:
        """Slot-seconds per sweep that do not grow with the number of trials."""
        return self.small.overhead_total_s - self.per_trial_s * self.small.trials

    def efficiency_at(self, seconds: float) -> float:
        """Efficiency of trials of ``seconds`` at the margin (fixed cost amortised away)."""
        return seconds / (seconds + max(self.per_trial_s, 0.0))


# ---------------------------------------------------------------------------------------------
# The work (self-contained: Ray ships these functions to its workers by value)


def spin(iterations: int) -> float:
    """Run a fixed pure-Python loop of ``iterations`` steps; return the seconds it took."""
    start = time.perf_counter()
    acc = 0
    for i in range(iterations):
        acc = (acc + i * i) & 0xFFFF
    if acc < 0:  # never true; keeps the loop from looking dead to a reader or a linter
        raise AssertionError
    return time.perf_counter() - start


def calibrate(seconds: float) -> int:
    """Loop steps that take about ``seconds`` on one core of this machine (best of 3)."""
    probe = 2_000_000
    best = min(spin(probe) for _ in range(3))
    return max(1, int(probe * seconds / best))


class SweepCore:
    """A btnet_core stand-in whose stage 2 is the benchmark's work (see the module docstring).

    Its trunk is a small file written at once (every trial of the sweep shares it, as trials
    of one seed do); ``train_branches`` runs ``EPOCHS`` parts of the work, calls the
    trainable's callback with a checkpoint folder after each, and appends the seconds worked to
    ``compute_log``.
    """

    def __init__(self, compute_log: str, iterations_per_epoch: int) -> None:
        self.compute_log = compute_log
        self.iterations_per_epoch = iterations_per_epoch

    def trunk_resolutions(self, cfg: Any) -> list[int | None]:
        return [None]

    def trunk_file(self, resolution: int | None = None) -> str:
        return "trunk.pt"

    def train_trunk(
        self,
        cfg: Any,
        out_dir: Path,
        resolution: int | None = None,
        callback: Callable[[dict], None] | None = None,
    ) -> Path:
        final = Path(out_dir) / self.trunk_file(resolution)
        final.parent.mkdir(parents=True, exist_ok=True)
        if not final.exists():
            tmp = final.with_suffix(f".{uuid.uuid4().hex}.tmp")
            tmp.write_text("{}")
            os.replace(tmp, final)
        return final

    def train_branches(
        self,
        cfg: Any,
        out_dir: Path,
        trunks: dict[int | None, Path],
        callback: Callable[[dict, Path], None] | None = None,
        resume_from: Path | None = None,
    ) -> dict[str, Any]:
        state_dir = Path(out_dir) / "stage2"
        state_dir.mkdir(parents=True, exist_ok=True)
        worked = 0.0
        metrics: dict[str, Any] = {}
        for epoch in range(1, EPOCHS + 1):
            worked += spin(self.iterations_per_epoch)
            metrics = {
                "stage": "stage2",
                "epoch": epoch,
                "iteration": epoch,
                "loss": 1.0 / epoch,
                "acc_112_7": 0.5 + 0.01 * epoch + 0.1 * float(cfg["stage2"]["lr"]),
            }
            (state_dir / "state.json").write_text(json.dumps({"epoch": epoch}))
            if callback is not None:
                callback(metrics, state_dir)
        append_jsonl(self.compute_log, {"compute_s": worked})
        return metrics


def _lrs(trials: int) -> list[float]:
    """N distinct grid points (stage-2 learning rates)."""
    return [round(0.01 * (i + 1), 4) for i in range(trials)]


# ---------------------------------------------------------------------------------------------
# The three systems


def run_btnet_lab(plan: Plan, iterations: int, work: Path) -> SystemResult:
    """The sweep as a btnet-lab grid study (see the module docstring)."""
    # One log per sweep: the same work folder serves several sweeps of one benchmark run.
    compute_log = str(work / f"btnet_compute_{uuid.uuid4().hex}.jsonl")
    core = SweepCore(compute_log, iterations // EPOCHS)
    grid = ", ".join(str(x) for x in _lrs(plan.trials))
    text = (
        "name: overhead\nkind: sweep\nmetric: acc_112_7\nmode: max\nseeds: [0]\n"
        f"concurrency: {SLOTS}\nresources: {{cpus: 1}}\n"
        "base:\n  model: {width: 0.0625, resolutions: [7]}\n"
        f"  stage2: {{epochs: {EPOCHS}}}\n"
        f"search: grid\nspace:\n  stage2.lr: {{grid: [{grid}]}}\n"
    )
    _, wall, ray_start = run_bench_study(
        text,
        "sweep_overhead.yaml",
        work / f"store_{plan.trials}_{uuid.uuid4().hex[:6]}",
        SLOTS,
        core=core,
        by_value=(sys.modules[__name__],),
    )
    compute = sum(r["compute_s"] for r in read_jsonl(compute_log))
    return _checked(SystemResult("btnet-lab", SLOTS, wall, ray_start, compute, plan.trials))


def _checked(result: SystemResult) -> SystemResult:
    """Compute is measured inside the wall time: more compute than slot-seconds is a bug."""
    if result.efficiency > 1.05:
        raise RuntimeError(
            f"{result.system}: {result.compute_s:.1f} s of trial compute in {result.wall_s:.1f} "
            f"s x {result.slots} slots; the compute was counted from elsewhere"
        )
    return result


def _tune_trial(config: dict) -> None:
    """Bare Ray Tune's trainable: the same work and reports, no checkpoints."""
    from ray import tune

    worked = 0.0
    for epoch in range(1, EPOCHS + 1):
        worked += spin(config["iterations"])
        tune.report({"epoch": epoch, "acc": 0.5 + 0.01 * epoch, "compute_s": worked})


def run_ray_tune(plan: Plan, iterations: int, work: Path) -> SystemResult:
    """The sweep as a plain ``tune.Tuner`` grid (see the module docstring)."""
    from ray import tune

    start = time.perf_counter()
    with local_ray(SLOTS, "bso", (sys.modules[__name__],)) as ray_start:
        tuner = tune.Tuner(
            tune.with_resources(_tune_trial, {"cpu": 1}),
            param_space={
                "lr": tune.grid_search(_lrs(plan.trials)),
                "iterations": iterations // EPOCHS,
            },
            tune_config=tune.TuneConfig(
                reuse_actors=True, max_concurrent_trials=SLOTS, metric="acc", mode="max"
            ),
            run_config=tune.RunConfig(
                storage_path=str(work / "tune"),
                name=f"overhead_{plan.trials}_{uuid.uuid4().hex[:6]}",
                verbose=0,
            ),
        )
        grid = tuner.fit()
    wall = time.perf_counter() - start
    if grid.num_errors or len(grid) != plan.trials:
        raise RuntimeError(f"Ray Tune sweep: {grid.num_errors} of {len(grid)} trials errored")
    compute = sum(float(r.metrics["compute_s"]) for r in grid)
    return _checked(SystemResult("Ray Tune", SLOTS, wall, ray_start.seconds, compute, plan.trials))


def run_optuna(plan: Plan, iterations: int) -> SystemResult:
    """The sweep as an in-process Optuna grid loop, one trial at a time."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lrs = _lrs(plan.trials)
    compute = [0.0]

    def objective(trial: Any) -> float:
        lr = trial.suggest_categorical("lr", lrs)
        acc = 0.0
        for epoch in range(1, EPOCHS + 1):
            compute[0] += spin(iterations // EPOCHS)
            acc = 0.5 + 0.01 * epoch + 0.1 * lr
            trial.report(acc, epoch)
        return acc

    start = time.perf_counter()
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.GridSampler({"lr": lrs}, seed=0)
    )
    study.optimize(objective, n_trials=plan.trials)
    wall = time.perf_counter() - start
    return SystemResult("Optuna (in-process)", 1, wall, None, compute[0], plan.trials)


# ---------------------------------------------------------------------------------------------
# Report


def render(
    plan: Plan,
    results: Sequence[SystemResult],
    margins: dict[str, Marginal],
    info: dict[str, Any],
    load_end: float,
) -> str:
    """The section: the machine, the tables and what they say against the targets."""
    rows = []
    for r in results:
        rows.append(
            [
                r.system,
                r.slots,
                f"{r.wall_s:.1f}",
                "-" if r.ray_start_s is None else f"{r.ray_start_s:.1f}",
                f"{r.compute_s:.1f}",
                f"{r.overhead_per_trial_s:.2f}",
                f"{r.overhead_after_start_s:.2f}",
                f"{r.efficiency:.3f}",
            ]
        )
    table = markdown_table(
        [
            "System",
            "Slots",
            "Wall (s)",
            "of which Ray start (s)",
            "Trial compute (s)",
            "Overhead per trial (s)",
            "without Ray start (s)",
            "Efficiency",
        ],
        rows,
    )
    margin_rows = [
        [
            system,
            f"{m.small.trials} / {m.large.trials}",
            f"{m.small.overhead_total_s:.1f} / {m.large.overhead_total_s:.1f}",
            f"**{m.per_trial_s:.2f}**",
            f"{m.fixed_s:.1f}",
            f"{m.efficiency_at(30.0):.3f}",
        ]
        for system, m in margins.items()
    ]
    margin_table = markdown_table(
        [
            "System",
            "Trials (two sweeps)",
            "Overhead slot-s (each sweep)",
            "Marginal overhead per trial (s)",
            "Fixed per sweep (slot-s)",
            "Efficiency of 30-s trials at the margin",
        ],
        margin_rows,
    )
    btnet = next(r for r in results if r.system == "btnet-lab")
    verdict = (
        f"btnet-lab: {btnet.overhead_per_trial_s:.2f} s overhead per trial (target < "
        f"{TARGET_OVERHEAD_S:.0f} s), efficiency {btnet.efficiency:.3f} (target > "
        f"{TARGET_EFFICIENCY}). "
    )
    if plan.seconds < 30:
        verdict += (
            f"These are {plan.seconds:g}-s trials (a quick run), not the 30-s trials the "
            "targets are stated for: a fixed start-up cost weighs far more here."
        )
    else:
        met = (
            btnet.overhead_per_trial_s < TARGET_OVERHEAD_S and btnet.efficiency > TARGET_EFFICIENCY
        )
        verdict += "Both targets met." if met else "Target missed; see the note below the table."
    tune_row = next((r for r in results if r.system == "Ray Tune"), None)
    if tune_row is not None:
        extra = btnet.overhead_after_start_s - tune_row.overhead_after_start_s
        verdict += (
            f" Without Ray's start, btnet-lab costs {btnet.overhead_after_start_s:.2f} s per "
            f"trial, {extra:+.2f} s against bare Ray Tune's "
            f"{tune_row.overhead_after_start_s:.2f} s: that difference is what btnet-lab itself "
            "adds; the rest is Ray's (scheduling, actor start, shutdown)."
        )
    return (
        section_heading("sweep_overhead")
        + machine_markdown(info, load_end)
        + f"{plan.trials} trials of {plan.seconds:g} s of single-core CPU work each "
        f"(a pure-Python loop in {EPOCHS} reported parts), {SLOTS} at a time on a "
        f"{SLOTS}-CPU Ray for btnet-lab and Ray Tune, one at a time for Optuna. Wall includes "
        "starting and stopping Ray (shown on its own too). Overhead per trial = (wall x slots "
        "- compute) / trials; efficiency = compute / (wall x slots).\n\n"
        + table
        + "\n"
        + verdict
        + _margin_text(margins, margin_table)
        + "\n\nWhat btnet-lab does per trial beyond Ray Tune: a checkpoint folder per report "
        "(copied into the study's store by Tune), a trunk-cache lookup through its coordinator "
        "actor, and a row plus curves written to the Parquet result store when the trial ends. "
        "Ray's start (a fixed cost per sweep, not per trial) is spread over the trials in the "
        "overhead column.\n"
    )


def _margin_text(margins: dict[str, Marginal], table: str) -> str:
    if not margins:
        return ""
    first = next(iter(margins.values()))
    text = (
        f"\n\n**Marginal overhead.** The same two systems on sweeps of {first.small.trials} "
        f"and {first.large.trials} trials of {MARGINAL_S:g} s each: the growth of the "
        "overhead slot-seconds between the two sweeps, per added trial, is what a trial costs "
        "beyond its compute; the rest is a fixed cost per sweep.\n\n" + table + "\n"
    )
    btnet = margins.get("btnet-lab")
    if btnet is not None and btnet.per_trial_s < 0:
        text += (
            "The overhead fell as trials were added: the difference is below the noise of this "
            "run (other jobs on the cores); rerun on a quiet machine to read a marginal cost.\n"
        )
    elif btnet is not None:
        eff = btnet.efficiency_at(30.0)
        met = btnet.per_trial_s < TARGET_OVERHEAD_S and eff > TARGET_EFFICIENCY
        text += (
            f"At the margin btnet-lab costs {btnet.per_trial_s:.2f} s per trial (target < "
            f"{TARGET_OVERHEAD_S:.0f} s) and runs 30-s trials at efficiency {eff:.3f} (target > "
            f"{TARGET_EFFICIENCY}): {'both met' if met else 'missed'}. Its fixed cost, "
            f"{btnet.fixed_s:.0f} slot-s per sweep, is paid once however many trials follow.\n"
        )
    return text


def measure_margins(trials: tuple[int, int], iterations: int, work: Path) -> dict[str, Marginal]:
    """btnet-lab and Ray Tune at two sweep sizes of short trials (interleaved by size)."""
    small, large = (Plan(n, MARGINAL_S) for n in trials)
    runs: dict[str, list[SystemResult]] = {"btnet-lab": [], "Ray Tune": []}
    for plan in (small, large):
        for system, fn in (("btnet-lab", run_btnet_lab), ("Ray Tune", run_ray_tune)):
            log.info("marginal: %s, %d trials of %g s", system, plan.trials, plan.seconds)
            runs[system].append(fn(plan, iterations, work))
    return {system: Marginal(*pair) for system, pair in runs.items()}


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the three systems and write the ``sweep_overhead`` section."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="trials per system")
    parser.add_argument("--seconds", type=float, default=None, help="work per trial (s)")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    logging.getLogger("ray").setLevel(logging.ERROR)
    base = QUICK if args.quick else FULL
    plan = Plan(
        args.trials if args.trials is not None else base.trials,
        args.seconds if args.seconds is not None else base.seconds,
    )
    if plan.trials < 1:
        raise ConfigError(f"--trials: {plan.trials} is not allowed; allowed: 1 or more")
    if not plan.seconds > 0:
        raise ConfigError(f"--seconds: {plan.seconds} is not allowed; allowed: above 0")
    info = machine_info()
    iterations = calibrate(plan.seconds)
    log.info("calibrated: %d loop steps for about %.1f s of work", iterations, plan.seconds)
    work = Path(tempfile.mkdtemp(prefix="btnet-bso-"))
    try:
        results = []
        log.info("btnet-lab: %d trials", plan.trials)
        results.append(run_btnet_lab(plan, iterations, work))
        log.info("Ray Tune: %d trials", plan.trials)
        results.append(run_ray_tune(plan, iterations, work))
        log.info("Optuna: %d trials", plan.trials)
        results.append(run_optuna(plan, iterations))
        margins = measure_margins(
            QUICK_MARGINAL_TRIALS if args.quick else MARGINAL_TRIALS,
            calibrate(MARGINAL_S),
            work,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in results:
        log.info(
            "%s: wall %.1f s, compute %.1f s, overhead %.2f s/trial, efficiency %.3f",
            r.system,
            r.wall_s,
            r.compute_s,
            r.overhead_per_trial_s,
            r.efficiency,
        )
    body = render(plan, results, margins, info, load_average())
    print(body)
    write_section("sweep_overhead", body, args.output)


if __name__ == "__main__":
    raise SystemExit(run_cli("bench.sweep_overhead", main, None))
