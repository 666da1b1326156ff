"""Each benchmark runs once, on its tiny ``--quick`` size, and writes its table.

Benchmarks are measurements, not tests: nothing here asserts a timing. What is checked is
that every benchmark still runs end to end from its one command and that its section of a
(temporary) BENCHMARKS.md holds the rows it promises, next to the others.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench._common import SECTIONS

REPO_ROOT = Path(__file__).resolve().parents[2]
HAND_NOTE = "A reader's note that no benchmark may delete."

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """BENCHMARKS.md after ``python -m bench.run_all --quick`` (one run for all tests)."""
    out = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\n{HAND_NOTE}\n")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run_all", "--quick", "--output", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text()


def _section(text: str, name: str) -> str:
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    assert text.count(start) == 1 and text.count(end) == 1, name
    return text[text.index(start) : text.index(end)]


def _rows(section: str, first_cell: str) -> list[list[str]]:
    """Table rows whose first cell is ``first_cell``, split into cells."""
    out = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            out.append(cells)
    return out


def test_model_cost_has_every_resolution_and_batch(report: str) -> None:
    """Item 1: a latency row per (batch, resolution) of the quick network, with ratios."""
    rows = _rows(_section(report, "model_cost"), "r18 x0.0625")
    latency = {(int(r[1]), int(r[2])) for r in rows if len(r) == 13}
    assert latency == {(b, r) for b in (1, 4) for r in (7, 14, 28, 112)}
    for r in rows:
        if len(r) == 13:
            mac_ratio = float(r[5])
            assert 0 < mac_ratio <= 1
            # latency ratio, with the interquartile range of the paired per-round ratios
            assert re.fullmatch(r"\*\*\d+\.\d\d\*\* \(\d+\.\d\d-\d+\.\d\d\)", r[9])
            if int(r[2]) == 112:
                assert mac_ratio == 1.0 and r[9] == "**1.00** (1.00-1.00)"


def test_model_cost_reports_parameters_against_separate_models(report: str) -> None:
    """Item 1: storage of BTNet (trunk + branches) against four separate models."""
    rows = [r for r in _rows(_section(report, "model_cost"), "r18 x0.0625") if len(r) == 6]
    assert len(rows) == 1
    assert 0 < float(rows[0][5]) < 1


def test_throughput_has_peak_step_and_trainer_rows(report: str) -> None:
    """Item 2: fp32 matmul peak, then both stages as a bare step and through the trainer."""
    section = _section(report, "throughput")
    assert len(_rows(section, "fp32")) == 1
    for stage in ("stage 1", "stage 2"):
        kinds = [r[1].split(" ")[0] for r in _rows(section, stage) if len(r) == 8]
        assert kinds == ["step", "trainer,"], stage
        for r in _rows(section, stage):
            if len(r) == 8:
                assert float(r[2]) > 0  # images/s
                assert re.match(r"\*\*\d+\.\d%\*\*", r[5])  # utilisation


def test_store_compares_with_ray_and_times_the_dashboard(report: str) -> None:
    """Item 6: the query through btnet-lab and through Ray at the quick size; a dashboard."""
    section = _section(report, "store")
    main = [r for r in _rows(section, "100") if len(r) == 8]
    assert len(main) == 1
    assert re.fullmatch(r"\*\*\d+x\*\*", main[0][6])  # Ray / btnet-lab
    dash = _rows(section, "50")
    assert len(dash) == 1 and dash[0][3].endswith("MB")


def test_sweep_overhead_has_the_three_systems(report: str) -> None:
    """Item 3: btnet-lab, bare Ray Tune and Optuna, each with wall, compute and efficiency."""
    section = _section(report, "sweep_overhead")
    for system, slots in (("btnet-lab", 2), ("Ray Tune", 2), ("Optuna (in-process)", 1)):
        rows = [r for r in _rows(section, system) if len(r) == 8]
        assert len(rows) == 1, system
        row = rows[0]
        assert int(row[1]) == slots
        assert float(row[2]) > 0 and float(row[4]) > 0  # wall, trial compute
        assert 0 < float(row[7]) <= 1.05  # efficiency (compute is timed inside the wall)
    # the marginal cost: the two Ray-based systems at two sweep sizes (2 and 4 in --quick)
    for system in ("btnet-lab", "Ray Tune"):
        rows = [r for r in _rows(section, system) if len(r) == 6]
        assert len(rows) == 1, system
        assert rows[0][1] == "2 / 4"
        assert re.fullmatch(r"\*\*-?\d+\.\d\d\*\*", rows[0][3])
        assert 0 < float(rows[0][5]) <= 1.0


def test_trunk_reuse_trains_one_trunk_when_shared(report: str) -> None:
    """Item 4: the shared study trains one trunk, the defeated one a trunk per trial."""
    section = _section(report, "trunk_reuse")
    shared = _rows(section, "shared trunk (as written)")
    unshared = _rows(section, "one trunk per trial")
    assert len(shared) == 1 and len(unshared) == 1
    assert shared[0][1] == unshared[0][1] == "2"  # K = 2 trials in --quick
    assert shared[0][2] == "1" and unshared[0][2] == "2"  # trunks trained
    assert float(shared[0][5]) > 0 and float(unshared[0][5]) > 0  # total CPU seconds


def test_asha_spends_no_more_than_the_grid(report: str) -> None:
    """Item 5: the grid and ASHA over the same points; ASHA trains at most the grid's epochs."""
    section = _section(report, "asha_vs_grid")
    grid = _rows(section, "full grid (2 x 2)")
    asha = _rows(section, "ASHA (grace 1, reduction 2)")
    assert len(grid) == 1 and len(asha) == 1
    assert grid[0][1] == asha[0][1] == "2"  # trials
    assert grid[0][3] == "4"  # 2 points x 2 epochs, every one to the end
    assert 2 <= int(asha[0][3]) <= 4
    assert 0 <= float(asha[0][6]) <= 1 and 0 <= float(grid[0][6]) <= 1
    assert "less stage-2 compute" in section


def test_sections_keep_their_order_and_the_hand_written_text(report: str) -> None:
    """All sections in the issue's order; text outside them survives; none left pending."""
    positions = [report.index(f"<!-- bench:{s.name} -->") for s in SECTIONS]
    assert positions == sorted(positions)
    assert HAND_NOTE in report
    assert "Not measured yet" not in report


def test_a_bad_option_is_one_line_and_exit_2(bench_error) -> None:
    """A user's mistake (a store size below ten trials) is one line, exit 2, nothing written."""
    lines = bench_error("bench.store", "--sizes", "5")
    assert len(lines) == 1 and lines[0].startswith("bench.store: error: --sizes: 5")
