"""The ``btnet-lab sweep`` command: run a study file on Ray Tune.

    btnet-lab sweep                          the demo study on the built-in synthetic faces
    btnet-lab sweep paper_ablation           a shipped study, by name
    btnet-lab sweep my_study.yaml --storage s3://bucket/results --address auto
    btnet-lab sweep my_study.yaml --resume   finish an interrupted study

The study is validated before anything starts (a mistake is one line naming the file, the line
and the key, exit status 2). The exit status is 0 when every trial of the study completed,
1 when some diverged, failed or did not run (the log says which, and how to resume).
"""

from __future__ import annotations

import argparse
import logging
import os

from ablations.study import Study, load_study, plan_trials
from search_spaces import DEMO, find_study, shipped_studies

log = logging.getLogger(__name__)


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``sweep`` on the ``btnet-lab`` command; its handler returns an exit code."""
    names = ", ".join(sorted(shipped_studies()))
    parser = subparsers.add_parser(
        "sweep",
        help="run an ablation study or a hyperparameter sweep on Ray Tune",
        description="Run a study (a YAML file, or the name of a shipped study: "
        f"{names}) on Ray Tune; every trial becomes a row of the result store.",
    )
    parser.add_argument(
        "study",
        nargs="?",
        default=DEMO,
        help=f"study file or shipped study name (default: {DEMO})",
    )
    parser.add_argument(
        "--storage",
        metavar="DIR_OR_URI",
        default=None,
        help="result store root: a folder or a pyarrow filesystem URI such as "
        "s3://bucket/results (default: the study's storage key, else "
        "./results)",
    )
    parser.add_argument(
        "--address",
        metavar="ADDRESS",
        default=None,
        help="join a running Ray cluster: 'auto' or ray://host:port "
        "(default: start Ray on this machine)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="finish a study the store already holds trials of; finished trials are not run again",
    )
    parser.add_argument(
        "--check", action="store_true", help="validate the study, print its trials and exit"
    )
    parser.set_defaults(handler=run_sweep)
    return parser


def run_sweep(args: argparse.Namespace) -> int:
    """Handler of ``btnet-lab sweep``; raises BTNetError for a user's mistake."""
    # Read by Ray when it is imported: trials' progress lines differ only in their numbers,
    # and Ray would fold them into one.
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    from ablations.runner import check_data, run_study

    path = find_study(args.study)
    study = load_study(path, storage=args.storage)
    _ensure_logging()
    if args.check:
        check_data(study, strict=not args.address)
        return _print_check(study)
    outcome = run_study(study, storage=args.storage, address=args.address, resume=args.resume)
    return 0 if outcome.complete and outcome.failed == 0 else 1


def _print_check(study: Study) -> int:
    print(f"{study.path}: valid {study.kind} '{study.name}'")
    if study.kind == "sweep" and study.algorithm in ("tpe", "nsga2"):
        print(
            f"  {study.algorithm}: {study.samples} point(s) x {len(study.seeds)} seed(s) "
            f"over {', '.join(p.key for p in study.space)}"
        )
        return 0
    for spec in plan_trials(study):
        what = spec.variant or ", ".join(f"{k}={v!r}" for k, v in spec.overrides.items())
        print(f"  {spec.trial_id}: {what} (seed {spec.seed})")
    return 0


def _ensure_logging() -> None:
    """Progress lines reach the terminal even when no one configured logging."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
        )
    logging.getLogger("ablations").setLevel(logging.INFO)
