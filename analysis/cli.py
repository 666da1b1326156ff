"""Command line of the analysis tools: ``btnet-lab results ...`` and ``btnet-lab dashboard``.

The console command ``btnet-lab`` (``btnet_lab/cli.py``) mounts these with
:func:`add_results_parser` and :func:`add_dashboard_parser`; every handler is stored as
``handler`` on the parsed arguments and returns an exit status. A user's mistake (an unknown
study, an empty store, a store of a newer schema version, a SQL error) prints one line to
stderr and returns 2. This module also runs on its own: ``python -m analysis.cli results list``.

Examples::

    btnet-lab results list
    btnet-lab results show abl-insertion --format csv -o board.csv
    btnet-lab results query "select variant, avg(final_acc_112_7) from trials group by 1"
    btnet-lab dashboard abl-insertion -o report.html --png figures/
    btnet-lab dashboard sweep-lr --serve
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from btnet_core.errors import BTNetError

logger = logging.getLogger(__name__)

STORE_ENV = "BTNET_STORE"


def default_store() -> str:
    """The store used when ``--store`` is not given: ``$BTNET_STORE`` or ``./results``."""
    return os.environ.get(STORE_ENV) or "./results"


def _store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store",
        default=None,
        metavar="PATH_OR_URI",
        help=f"result store: a folder or a pyarrow filesystem URI (default: ${STORE_ENV} or "
        "./results)",
    )


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("table", "csv", "json", "parquet"),
        default="table",
        help="output format (default: table)",
    )
    parser.add_argument(
        "-o", "--output", default=None, metavar="FILE", help="write to FILE instead of stdout"
    )
    parser.add_argument(
        "--max-rows",
        type=int,
        default=200,
        metavar="N",
        help="rows shown by the table format (0: all; default 200)",
    )


def add_results_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``results {list,show,report,query}`` to an argparse sub-parser collection.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``results`` parser.
    """
    parser = subparsers.add_parser(
        "results",
        help="list studies, show a leaderboard, query the result store",
        description="Read the Parquet result store.",
    )
    sub = parser.add_subparsers(dest="results_command", metavar="{list,show,report,query}")
    sub.required = True

    p_list = sub.add_parser("list", help="studies with trial counts, status and cost")
    _store_option(p_list)
    _output_options(p_list)
    p_list.set_defaults(handler=_guard(_cmd_list))

    p_show = sub.add_parser("show", help="the leaderboard of one study")
    p_show.add_argument("study", help="study name")
    _store_option(p_show)
    _output_options(p_show)
    p_show.add_argument(
        "--top", type=int, default=20, metavar="N", help="rows of the leaderboard (0: all)"
    )
    p_show.add_argument(
        "--baseline", default=None, help="baseline variant of an ablation (default: baseline)"
    )
    p_show.add_argument(
        "--compare",
        action="store_true",
        help="ablations: every variant against the baseline, per metric (paired by seed)",
    )
    p_show.set_defaults(handler=_guard(_cmd_show))

    p_report = sub.add_parser(
        "report",
        help="an ablation as Markdown: matrix, paired differences, open-set, cost, compute",
    )
    p_report.add_argument("study", help="study name")
    _store_option(p_report)
    p_report.add_argument("-o", "--output", default=None, help="write to FILE (default: stdout)")
    p_report.add_argument(
        "--baseline", default=None, help="baseline variant (default: the study's)"
    )
    p_report.set_defaults(handler=_guard(_cmd_report))

    p_query = sub.add_parser(
        "query",
        help="run SQL (DuckDB) over views `trials` and `curves`",
        description="Run one SQL statement with DuckDB; the views `trials` (one row per "
        "trial) and `curves` (learning curves) cover every study in the store.",
    )
    p_query.add_argument("sql", help='e.g. "select study, count(*) from trials group by 1"')
    _store_option(p_query)
    _output_options(p_query)
    p_query.set_defaults(handler=_guard(_cmd_query))
    return parser


def add_dashboard_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``dashboard STUDY`` to an argparse sub-parser collection.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers()`` returned.

    Returns:
        The ``dashboard`` parser.
    """
    parser = subparsers.add_parser(
        "dashboard",
        help="write a study's self-contained HTML dashboard, or serve it live",
        description="Write one offline HTML file with every figure of a study, export its "
        "main figures as PNG, or serve a live view on 127.0.0.1 that updates as trials land.",
    )
    parser.add_argument("study", help="study name")
    _store_option(parser)
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FILE",
        help="HTML file to write (default: <study>.html)",
    )
    parser.add_argument("--baseline", default=None, help="baseline variant of an ablation")
    parser.add_argument(
        "--png", default=None, metavar="DIR", help="also write the main figures as PNG to DIR"
    )
    parser.add_argument(
        "--serve", action="store_true", help="serve a live view on 127.0.0.1 instead of a file"
    )
    parser.add_argument(
        "--port", type=int, default=8050, help="port of the live view (default 8050; 0: any)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address the live view listens on (default 127.0.0.1, this machine only; the "
        "page has no authentication, so prefer an SSH tunnel to 0.0.0.0)",
    )
    parser.set_defaults(handler=_guard(_cmd_dashboard))
    return parser


def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a user-facing error into one line on stderr and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BTNetError as exc:
            print(f"btnet-lab: error: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `... | head`
            return 0

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _store(args: argparse.Namespace) -> str:
    return args.store or default_store()


def _max_rows(args: argparse.Namespace) -> int | None:
    return None if args.max_rows <= 0 else args.max_rows


def _cmd_list(args: argparse.Namespace) -> int:
    from analysis.query import write_frame
    from analysis.store import list_studies

    frame = list_studies(_store(args))
    write_frame(frame, args.format, args.output, max_rows=_max_rows(args))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from analysis.query import leaderboard, write_frame
    from analysis.stats import compare_variants
    from analysis.store import read_trials

    trials = read_trials(_store(args), args.study)
    if args.compare:
        frame = compare_variants(trials, args.baseline)
        base = frame["baseline"].iloc[0] if len(frame) else "baseline"
        heading = f"study {args.study}: each variant against {base}, paired by seed"
    else:
        frame, heading = leaderboard(trials, args.baseline, args.top or None)
    if args.format == "table" and args.output is None:
        print(heading)
    write_frame(frame, args.format, args.output, max_rows=_max_rows(args))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from analysis.report import study_report
    from analysis.storefs import write_local_text

    text = study_report(_store(args), args.study, args.baseline)
    if args.output is None:
        print(text)
    else:
        print(f"wrote {write_local_text(args.output, text, 'the report')}")
    return 0


def _cmd_query(args: argparse.Namespace) -> int:
    from analysis.query import write_frame
    from analysis.store import sql

    frame = sql(_store(args), args.sql)
    write_frame(frame, args.format, args.output, max_rows=_max_rows(args))
    return 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    if args.serve:
        from analysis.live import serve

        serve(_store(args), args.study, args.port, args.baseline, host=args.host)
        return 0
    from analysis.dashboard import build_report, write_html

    report = build_report(_store(args), args.study, args.baseline)
    output = args.output or f"{re.sub(r'[^A-Za-z0-9._-]+', '_', args.study)}.html"
    path = write_html(report, output)
    print(f"wrote {path}")
    if args.png:
        from analysis.export import export_png

        files = export_png(report, args.png)
        print(f"wrote {len(files)} PNG figures to {args.png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser with ``results`` and ``dashboard`` (for ``python -m``)."""
    parser = argparse.ArgumentParser(prog="btnet-lab", description="btnet-lab analysis tools")
    sub = parser.add_subparsers(dest="command", metavar="{results,dashboard}")
    sub.required = True
    add_results_parser(sub)
    add_dashboard_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
