"""The ``btnet-lab`` command.

    btnet-lab train CONFIG.yaml --out DIR [--set key=value ...]   one run, both stages
    btnet-lab cost --network r50 --resolutions 7 14 28 112 [--json]
    btnet-lab evaluate RUN_DIR --data PATH --protocol ...          the field's protocols
    btnet-lab sweep [STUDY.yaml | NAME] [--storage DIR] [--resume] a study on Ray Tune
    btnet-lab results list | show STUDY | query "SQL"             the result store
    btnet-lab dashboard STUDY -o report.html [--serve]             Plotly dashboards

A user's mistake (bad config, missing data, corrupt file) prints one line naming the file,
the key and what is allowed, and exits with status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from btnet_core.errors import BTNetError

log = logging.getLogger("btnet_lab")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="btnet-lab",
        description="BTNet ablation studies and sweeps on Ray Tune, with a Parquet result "
        "store and Plotly dashboards.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from btnet_core.cli import add_core_parsers

    add_core_parsers(sub)
    try:
        from ablations.cli import add_sweep_parser
    except ImportError as exc:  # a broken Ray install must not take train/cost down with it
        log.debug("sweep command unavailable: %s", exc)
    else:
        add_sweep_parser(sub)
    try:
        from analysis.cli import add_dashboard_parser, add_results_parser
    except ImportError as exc:
        log.debug("results/dashboard commands unavailable: %s", exc)
    else:
        add_results_parser(sub)
        add_dashboard_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", False))
    if args.command is None:
        # No command: the main job, the demo study on the built-in synthetic faces.
        args = parser.parse_args(["sweep"])
    try:
        code = args.handler(args)
    except BTNetError as exc:
        print(f"btnet-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("btnet-lab: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    sys.exit(main())
