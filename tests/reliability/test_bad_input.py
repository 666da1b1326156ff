"""Bad input through the btnet-lab command, one table for the reliability contract: every
mistake in a study (``btnet-lab sweep``) or a run config (``btnet-lab train``) is one error
line naming the file and key, exit status 2, and nothing written (no store, no run folder).

Finer cases live next to their parsers (tests/ablations/test_study.py,
tests/btnet_core/test_config.py); the data-side cases (missing data, corrupt images,
truncated RecordIO, a checkpoint of another network) in tests/btnet_core.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from btnet_lab.cli import main

SWEEP = "name: bad\nkind: sweep\nmetric: acc_112_7\nmode: max\nsearch: random\nsamples: 2\n"

# case -> (study text, what the one error line must contain)
BAD_STUDIES = {
    "YAML syntax error": (SWEEP + "space: {stage2.lr: [\n", "YAML syntax error"),
    "unknown key": (SWEEP + "space: {stage2.lr: {choice: [0.1]}}\nseedz: [1]\n", "seedz"),
    "wrong type": (SWEEP + "space: {stage2.epochs: {choice: [one]}}\n", "stage2.epochs"),
    "empty range": (SWEEP + "space: {stage2.lr: {uniform: [0.1, 0.1]}}\n", "empty range"),
    "inverted range": (SWEEP + "space: {stage2.epochs: {randint: [5, 2]}}\n", "empty range"),
    "unsupported resolution": (
        SWEEP + "space: {model.resolutions: {choice: [[7, 21]]}}\n",
        "resolution 21 is not supported",
    ),
    "unsupported insertion point": (
        SWEEP + "space: {model.insertion_depth: {choice: [0, 9]}}\n",
        "model.insertion_depth: 9 is too deep",
    ),
    "missing data folder": (
        SWEEP.replace("search: random\nsamples: 2\n", "search: grid\n")
        + "base: {data: {source: folder, path: no_such_faces}}\n"
        + "space: {stage2.lr: {grid: [0.1]}}\n",
        "no_such_faces does not exist",
    ),
}

# case -> (config text, what the one error line must contain)
BAD_CONFIGS = {
    "YAML syntax error": ("model: {width: [\n", "YAML syntax error"),
    "unknown key": ("model: {widht: 0.5}\n", "model.widht"),
    "wrong type": ("stage2: {epochs: three}\n", "stage2.epochs"),
    "unsupported resolution": ("model: {resolutions: [7, 21]}\n", "resolution 21"),
    "unsupported insertion point": ("model: {insertion: {7: layer9.9}}\n", "model.insertion.7"),
}


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("case", list(BAD_STUDIES))
def test_bad_study_is_one_line_exit_2_and_no_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """btnet-lab sweep BAD.yaml: one line naming bad.yaml, status 2, the store not created."""
    text, needle = BAD_STUDIES[case]
    study = tmp_path / "bad.yaml"
    study.write_text(text)
    assert main(["sweep", str(study), "--storage", str(tmp_path / "store")]) == 2
    line = one_error_line(capsys)
    assert "bad.yaml" in line and needle in line, line
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_run_config_is_one_line_exit_2_and_no_run_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """btnet-lab train BAD.yaml: one line naming bad.yaml, status 2, --out not created."""
    text, needle = BAD_CONFIGS[case]
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    line = one_error_line(capsys)
    assert "bad.yaml" in line and needle in line, line
    assert not (tmp_path / "run").exists()
