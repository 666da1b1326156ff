"""Run every benchmark, one after the other, each writing its own section of BENCHMARKS.md.

Run::

    .venv/bin/python -m bench.run_all [--quick] [--output BENCHMARKS.md] [--only store ...]

(``make bench`` runs this.) The benchmarks run in sequence, never side by side: on a machine
with few cores, two at once would measure each other. Each one runs in its own process, so
one's threads, caches and imports do not colour the next one's numbers, and a failure of one
does not stop the others; the exit status is non-zero when any failed.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench._common import REPO_ROOT, base_parser, run_cli, setup_logging
from btnet_core.errors import ConfigError

log = logging.getLogger(__name__)

#: Module of each benchmark, in the order of BENCHMARKS.md.
BENCHMARKS: dict[str, str] = {
    "model_cost": "bench.model_cost",
    "throughput": "bench.throughput",
    "sweep_overhead": "bench.sweep_overhead",
    "trunk_reuse": "bench.trunk_reuse",
    "asha_vs_grid": "bench.asha",
    "store": "bench.store",
}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the chosen benchmarks; raise SystemExit(1) when one of them failed."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", default=None, help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    chosen = args.only or list(BENCHMARKS)
    for name in chosen:
        if name not in BENCHMARKS:
            raise ConfigError(
                f"--only: {name!r} is not a benchmark; allowed: {', '.join(BENCHMARKS)}"
            )
    output = str(Path(args.output).resolve())  # the benchmarks run from the repository root
    failed = []
    for name in chosen:
        cmd = [sys.executable, "-m", BENCHMARKS[name], "--output", output]
        if args.quick:
            cmd.append("--quick")
        log.info("running %s", " ".join(cmd[1:]))
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=REPO_ROOT, check=False).returncode
        log.info("%s: exit %d after %.0f s", name, code, time.perf_counter() - start)
        if code != 0:
            failed.append(name)
    if failed:
        log.error("failed: %s", ", ".join(failed))
        raise SystemExit(1)


if __name__ == "__main__":
    raise SystemExit(run_cli("bench.run_all", main, None))
