"""What every benchmark shares: the machine it ran on, robust timing, and BENCHMARKS.md.

A benchmark measures, then calls :func:`write_section` with its own Markdown; the function
replaces that one named section of ``BENCHMARKS.md`` and leaves every other section, and any
text written by hand outside the sections, as it was. Sections live between two HTML comments,
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``, and appear in the order of
:data:`SECTIONS` (the issue's numbering), whichever benchmark ran first.

Timings are reported as medians with the interquartile range: the development machine is
shared, and a median of interleaved runs is what survives other people's jobs.
:func:`measure_interleaved` runs the compared alternatives round-robin, so a burst of load
hits all of them alike instead of whichever happened to run during it.

Example::

    timings = measure_interleaved({"a": fn_a, "b": fn_b}, repeats=7, warmup=1)
    body = section_heading("store") + machine_markdown(machine_info()) + "\\n" + table
    write_section("store", body)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import fcntl
import hashlib
import importlib.metadata
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from btnet_core.checkpoints import atomic_write_text
from btnet_core.errors import BTNetError, ConfigError, FormatError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The file every benchmark writes its section into, unless ``--output`` says otherwise.
DEFAULT_OUTPUT = REPO_ROOT / "BENCHMARKS.md"
#: Versions reported with every section (distribution names; read without importing them).
VERSIONED = ("torch", "ray", "pyarrow", "duckdb", "pandas", "plotly", "optuna")


@dataclass(frozen=True)
class SectionSpec:
    """One section of BENCHMARKS.md: its key, its heading and the command that writes it."""

    name: str
    title: str
    command: str


#: Every section, in the order they appear in BENCHMARKS.md (the issue's numbering). A section
#: whose benchmark has not run yet says so.
SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec(
        "model_cost",
        "1. Model cost per resolution: branch path vs upsample vs separate models",
        "python -m bench.model_cost",
    ),
    SectionSpec(
        "throughput",
        "2. Training throughput and FLOP utilisation",
        "python -m bench.throughput",
    ),
    SectionSpec(
        "sweep_overhead",
        "3. Sweep overhead: btnet-lab vs Optuna vs bare Ray Tune",
        "python -m bench.sweep_overhead",
    ),
    SectionSpec(
        "trunk_reuse",
        "4. Trunk reuse across trials",
        "python -m bench.trunk_reuse",
    ),
    SectionSpec(
        "asha_vs_grid",
        "5. ASHA against grid search",
        "python -m bench.asha",
    ),
    SectionSpec(
        "store",
        "6. Result store and dashboard: btnet-lab vs Ray's ExperimentAnalysis",
        "python -m bench.store",
    ),
)
_SPECS = {s.name: s for s in SECTIONS}
_NAME = re.compile(r"[a-z0-9_]+")
# A cell that reads as a number ("0.24", "**0.75**", "12.3 ms (IQR 1.0)"): right-aligned.
_NUMERIC = re.compile(r"\**[~-]?[-+]?(\d|\.\d)")
# Cells that say "no value" and do not decide a column's alignment.
_PLACEHOLDERS = ("", None, "-", "not run")

_HEADER = """# Benchmarks

What btnet-lab costs, side by side with the alternatives, measured in one run each. Every
section is written by its own command (`make bench` runs them all; `--quick` runs a tiny size)
and names the machine, the versions, the commit and the date it was measured on. A section is
replaced when its benchmark runs again; text outside the `<!-- bench:... -->` markers is kept.
Timings are medians with the interquartile range (IQR) of interleaved runs.
"""


# ---------------------------------------------------------------------------------------------
# The machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_isa() -> str:
    """The widest vector extension the CPU reports (it bounds the fp32 matmul peak)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    for isa in ("amx_tile", "avx512f", "avx2", "avx"):
                        if isa in flags:
                            return isa.upper().replace("_TILE", "")
                    return "no AVX"
    except OSError:
        pass
    return "unknown ISA"


def _ram_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return float("nan")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


def _git_commit() -> str:
    try:
        head = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} with uncommitted changes" if dirty else head


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> float:
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def machine_info() -> dict[str, Any]:
    """The machine, the software and the moment of a measurement.

    Torch is asked for its thread count and GPU only when the benchmark has imported it
    already (the store benchmark does not need torch and should not pay for importing it).
    """
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "isa": _cpu_isa(),
        "logical_cpus": os.cpu_count() or 0,
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0,
        "ram_gib": _ram_gib(),
        "load_1min": load_average(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in VERSIONED},
        "git_commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "torch_threads": None,
        "gpu": None,
    }
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_markdown(info: Mapping[str, Any], load_end: float | None = None) -> str:
    """A short paragraph that says where and when a section was measured."""
    load = f"load average {info['load_1min']:.1f} at the start"
    if load_end is not None:
        load += f", {load_end:.1f} at the end"
    cpus = info["usable_cpus"] or info["logical_cpus"]
    busy = info["load_1min"] > 0.5 * cpus or (load_end is not None and load_end > 0.5 * cpus)
    if busy:
        load += " (the cores were shared with other jobs: read ratios and medians, not maxima)"
    threads = "" if info["torch_threads"] is None else f" ({info['torch_threads']} threads)"
    versions = ", ".join(
        f"{d} {v}{threads if d == 'torch' else ''}"
        for d, v in info["versions"].items()
        if v != "not installed"
    )
    gpu = info["gpu"] or "no GPU"
    return (
        f"Measured {info['date']} on {info['cpu']} ({info['isa']}), {cpus} usable of "
        f"{info['logical_cpus']} logical CPUs, {info['ram_gib']:.0f} GiB RAM, {gpu}; {load}. "
        f"Python {info['python']}, {versions}; OMP_WAIT_POLICY={info['omp_wait_policy']}. "
        f"Commit {info['git_commit']}.\n\n"
    )


# ---------------------------------------------------------------------------------------------
# Timing


@dataclass(frozen=True)
class Timing:
    """A summary of repeated measurements of one quantity (seconds, unless said otherwise)."""

    median: float
    q1: float
    q3: float
    n: int
    samples: tuple[float, ...] = ()  # the measurements, in the order they were taken

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def ms(self, digits: int = 1) -> str:
        """``"12.3 ms (IQR 1.2)"``."""
        return f"{self.median * 1e3:.{digits}f} ms (IQR {self.iqr * 1e3:.{digits}f})"


def median(values: Sequence[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles (inclusive method; both the value itself for one value)."""
    if not values:
        return float("nan"), float("nan")
    if len(values) == 1:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def summarize(values: Sequence[float]) -> Timing:
    """Median, quartiles and count of ``values``."""
    q1, q3 = quartiles(values)
    return Timing(median(values), q1, q3, len(values), tuple(values))


def paired_ratio(a: Timing, b: Timing) -> Timing:
    """Summary of the per-round ratios ``a_i / b_i`` of two interleaved measurements.

    Both were timed in the same rounds (:func:`measure_interleaved`), so a burst of load that
    slows one side of a pair slows the other too; the ratios' spread is far smaller than
    either timing's. Falls back to the ratio of the medians when the samples are missing.
    """
    if a.samples and len(a.samples) == len(b.samples):
        return summarize([x / y for x, y in zip(a.samples, b.samples, strict=True)])
    r = a.median / b.median
    return Timing(r, r, r, 1, (r,))


def cpu_timer(fn: Callable[[], object]) -> float:
    """Seconds of one call of ``fn`` on the host clock."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def device_timer(device: Any) -> Callable[[Callable[[], object]], float]:
    """A timer for work on ``device``: CUDA events on a GPU, the host clock otherwise.

    CUDA kernels run asynchronously, so the host clock would time the launch, not the work;
    events recorded on the stream around the call, then a wait for the second one, time the
    work itself.
    """
    import torch

    if torch.device(device).type != "cuda":
        return cpu_timer

    def timer(fn: Callable[[], object]) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3

    return timer


def resolve_device(name: str) -> Any:
    """A ``torch.device`` from ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        ConfigError: Not a device name, or CUDA asked for where torch sees none.
    """
    import torch

    allowed = "allowed: auto, cpu, cuda, cuda:N"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device: {name!r} is not a device; {allowed}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device: {name!r} is not supported; {allowed}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device: {name!r} asked for, but torch sees no CUDA device")
    return device


#: Operator kinds of :func:`operator_time_shares`: (kind, substrings of the op name).
OPERATOR_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("convolution", ("conv",)),
    ("matrix product", ("mm", "matmul", "linear")),
    ("batch norm", ("batch_norm",)),
    ("PReLU", ("prelu",)),
)


def operator_time_shares(fn: Callable[[], object], device: Any) -> dict[str, float]:
    """Share of the operators' self time per kind (see :data:`OPERATOR_KINDS`) in one call.

    Uses the torch profiler: host self time on a CPU, device self time on a GPU (attributed to
    the operators that launched the kernels; this GPU path has not been run, the development
    machine has none). Everything not matched is ``"everything else"`` (additions, copies,
    resizes, optimiser updates). The profiler adds its own overhead per operator, so the
    shares are indicative.
    """
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    shares = {kind: 0.0 for kind, _ in OPERATOR_KINDS}
    shares["everything else"] = 0.0
    for event in prof.key_averages():
        if cuda and event.device_type != torch.autograd.DeviceType.CPU:
            # Kernel rows repeat the device time their launching operator already carries.
            continue
        spent = event.self_device_time_total if cuda else event.self_cpu_time_total
        name = event.key.lower()
        kind = next(
            (k for k, keys in OPERATOR_KINDS if any(s in name for s in keys)), "everything else"
        )
        shares[kind] += spent
    total = sum(shares.values()) or 1.0
    return {k: v / total for k, v in shares.items()}


def measure(
    fn: Callable[[], object],
    repeats: int,
    warmup: int = 1,
    timer: Callable[[Callable[[], object]], float] = cpu_timer,
) -> Timing:
    """Median of ``repeats`` timed calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    return summarize([timer(fn) for _ in range(repeats)])


def measure_interleaved(
    fns: Mapping[str, Callable[[], object]],
    repeats: int,
    warmup: int = 1,
    timer: Callable[[Callable[[], object]], float] = cpu_timer,
) -> dict[str, Timing]:
    """Time several alternatives round-robin: each round calls every one of them once.

    Interleaving matters on a shared machine: a burst of someone else's work then slows
    every alternative of that round instead of all repeats of one of them, so the ratios of
    the medians stay honest even when the absolute times drift.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            samples[key].append(timer(fn))
    return {k: summarize(v) for k, v in samples.items()}


# ---------------------------------------------------------------------------------------------
# Formatting


def si(value: float, unit: str = "", digits: int = 2) -> str:
    """``6.31 G``-style numbers (k, M, G, T)."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}f} {prefix}{unit}"
    return f"{value:.{digits}f} {unit}".rstrip()


def human_bytes(n: float) -> str:
    """``4.8 MB`` (powers of 1000, as file managers show them)."""
    return si(n, "B", 1)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; numbers right-aligned, text left-aligned."""

    def numeric(col: int) -> bool:
        cells = [r[col] for r in rows if r[col] not in _PLACEHOLDERS]
        return bool(cells) and all(
            isinstance(c, (int, float)) or _NUMERIC.match(str(c)) for c in cells
        )

    align = ["---:" if numeric(i) else ":---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    for row in rows:
        cells = ["" if c is None else (f"{c:,}" if isinstance(c, int) else str(c)) for c in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# BENCHMARKS.md


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def section_heading(name: str) -> str:
    """The heading and the command line of a known section."""
    spec = _SPECS[name]
    return f"## {spec.title}\n\n`{spec.command}` (add `--quick` for a tiny run).\n\n"


def pending_body(spec: SectionSpec) -> str:
    """What a section says before its benchmark has run."""
    return (
        f"## {spec.title}\n\nNot measured yet: `{spec.command}` writes this section when it "
        "exists and has run.\n"
    )


def _initial_text() -> str:
    parts = [_HEADER]
    for spec in SECTIONS:
        start, end = _markers(spec.name)
        parts.append(f"\n{start}\n{pending_body(spec)}{end}\n")
    return "".join(parts)


def _find(text: str, name: str, path: Path) -> tuple[int, int] | None:
    """(start of the opening marker, end of the closing marker) of a section, or None."""
    start, end = _markers(name)
    n_start, n_end = text.count(start), text.count(end)
    if n_start == 0 and n_end == 0:
        return None
    if n_start != 1 or n_end != 1 or text.index(start) > text.index(end):
        raise FormatError(
            f"{path}: section {name!r} needs exactly one {start} followed by one {end} "
            f"(found {n_start} and {n_end}); repair the markers or delete the file"
        )
    return text.index(start), text.index(end) + len(end)


def replace_section(text: str, name: str, body: str, path: Path = DEFAULT_OUTPUT) -> str:
    """``text`` with section ``name`` set to ``body`` (pure; :func:`write_section` saves it).

    A missing section is inserted after the nearest earlier section of :data:`SECTIONS` that
    is present (or before the nearest later one, or at the end).
    """
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"benchmark section name {name!r}: allowed: lowercase letters, digits and _"
        )
    start, end = _markers(name)
    block = f"{start}\n{body.rstrip()}\n{end}"
    found = _find(text, name, path)
    if found is not None:
        return text[: found[0]] + block + text[found[1] :]
    order = [s.name for s in SECTIONS]
    if name in order:
        i = order.index(name)
        for earlier in reversed(order[:i]):
            span = _find(text, earlier, path)
            if span is not None:
                return text[: span[1]] + "\n\n" + block + text[span[1] :]
        for later in order[i + 1 :]:
            span = _find(text, later, path)
            if span is not None:
                return text[: span[0]] + block + "\n\n" + text[span[0] :]
    return text.rstrip("\n") + "\n\n" + block + "\n"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock per output file, so two benchmarks finishing together both land.

    The lock file lives in the temp directory, not next to the output, so the repository
    gains no stray files; the output itself is replaced atomically under the lock.
    """
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    lock_path = Path(tempfile.gettempdir()) / f"btnet-bench-{digest}.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_section(name: str, body: str, path: str | os.PathLike[str] | None = None) -> Path:
    """Replace (or add) one named section of BENCHMARKS.md, keeping everything else.

    Args:
        name: Section key, e.g. ``"store"``; a name of :data:`SECTIONS` keeps its place in
            the issue's order, any other name is appended.
        body: The section's Markdown, heading included (see :func:`section_heading`).
        path: The file (default: ``BENCHMARKS.md`` at the repository root). Created when it
            does not exist; a known section it lacks gets a "not measured yet" note.

    Returns:
        The path written.

    Raises:
        FormatError: The file's markers of this (or a neighbouring) section are broken; the
            file is left untouched.
        ConfigError: The folder does not exist, or ``name`` is not a valid key.
    """
    target = Path(path) if path is not None else DEFAULT_OUTPUT
    if not target.parent.is_dir():
        raise ConfigError(f"--output {target}: folder {target.parent} does not exist")
    if target.is_dir():
        raise ConfigError(f"--output {target}: is a folder; give a Markdown file")
    with _locked(target):
        text = target.read_text() if target.exists() else _initial_text()
        new = replace_section(text, name, body, target)
        for spec in SECTIONS:  # every known section keeps its place, measured or not
            if _find(new, spec.name, target) is None:
                new = replace_section(new, spec.name, pending_body(spec), target)
        atomic_write_text(target, new)
    log.info("wrote section %s of %s", name, target)
    return target


# ---------------------------------------------------------------------------------------------
# Command line


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick``, ``--output`` and ``-v``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a tiny size, to check the benchmark still works"
    )
    parser.add_argument(
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="Markdown file whose section is replaced (default: BENCHMARKS.md in the repo)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_cli(
    prog: str, main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None
) -> int:
    """Run a benchmark's ``main``: a user's mistake is one line on stderr and exit status 2."""
    try:
        main(argv)
    except BTNetError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def setup_logging(verbose: bool) -> None:
    """Progress lines on stderr (what is being measured, how far along)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
