"""Hostile checkpoints: a ``.pt`` file whose pickle carries a payload (a ``__reduce__`` that
would create a marker file) is refused with one CheckpointError line by every path that reads
checkpoints (checkpoints.load, the trunk and branch loaders behind ``btnet-lab evaluate``, the
training-state resume), the payload never runs, and every ``torch.load`` of the code base
passes ``weights_only=True``.
"""

from __future__ import annotations

import ast
import builtins
import json
from pathlib import Path

import pytest
import torch

from btnet_core import checkpoints
from btnet_core.config import resolve_config
from btnet_core.errors import CheckpointError
from btnet_core.evaluate import load_run
from btnet_core.model import build_trunk
from btnet_core.train import _build_head
from btnet_lab.cli import main

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("btnet_core", "ablations", "analysis", "btnet_lab", "search_spaces", "bench")
TINY = {
    "device": "cpu",
    "model": {"width": 0.0625, "embedding_size": 32, "resolutions": [7]},
    "data": {"identities": 8, "images_per_identity": 4},
}
CLASSES = 8


class Payload:
    """Unpickling this calls open(marker, "w"): the file appears if the pickle ever runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (builtins.open, (str(self.marker), "w"))


def hostile_checkpoint(path: Path, marker: Path, kind: str) -> Path:
    """A file shaped like a btnet-lab checkpoint of ``kind`` with a payload among its tensors."""
    cfg = resolve_config(TINY)
    meta = checkpoints._meta(cfg, kind=kind, num_classes=CLASSES, resolution=7, epoch=1)
    torch.save({"meta": meta, "trunk": {"w": Payload(marker)}, "branch": Payload(marker)}, path)
    assert not marker.exists()
    return path


def run_dir(tmp_path: Path) -> Path:
    """A finished-looking run directory with an honest (untrained) trunk."""
    out = tmp_path / "run"
    out.mkdir()
    cfg = resolve_config(TINY)
    (out / "config.yaml").write_text(json.dumps(cfg.to_dict()))  # JSON is YAML
    (out / "final_metrics.json").write_text("{}")
    trunk = build_trunk(cfg["model"])
    checkpoints.save_trunk(out / "trunk.pt", trunk, _build_head(cfg, CLASSES), cfg, CLASSES, None)
    return out


def assert_refused_one_line(exc: CheckpointError, path: Path, marker: Path) -> None:
    message = str(exc)
    assert "\n" not in message and str(path) in message, message
    assert "not a readable btnet-lab checkpoint" in message, message
    assert not marker.exists(), "the pickle's payload ran"


def test_checkpoints_load_refuses_a_pickle_payload(tmp_path: Path) -> None:
    """checkpoints.load: one CheckpointError line, payload never runs."""
    marker = tmp_path / "PWNED"
    path = hostile_checkpoint(tmp_path / "trunk.pt", marker, "trunk")
    with pytest.raises(CheckpointError) as info:
        checkpoints.load(path)
    assert_refused_one_line(info.value, path, marker)


@pytest.mark.parametrize("name", ["trunk.pt", "branch_7.pt"])
def test_run_loading_refuses_a_hostile_trunk_or_branch(tmp_path: Path, name: str) -> None:
    """evaluate.load_run with a payload in the trunk or in a branch: refused, nothing ran."""
    out = run_dir(tmp_path)
    marker = tmp_path / "PWNED"
    path = hostile_checkpoint(out / name, marker, name.split("_")[0].removesuffix(".pt"))
    with pytest.raises(CheckpointError) as info:
        load_run(out)
    assert_refused_one_line(info.value, path, marker)


def test_evaluate_command_refuses_a_hostile_branch_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`btnet-lab evaluate` on such a run: one error line, status 2, no output, no payload."""
    out = run_dir(tmp_path)
    marker = tmp_path / "PWNED"
    hostile_checkpoint(out / "branch_7.pt", marker, "branch")
    code = main(["evaluate", str(out), "--data", "synthetic", "--protocol", "verification"])
    stdout, stderr = capsys.readouterr()
    assert code == 2 and stdout == "" and "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("btnet-lab: error:")]
    assert len(lines) == 1 and "branch_7.pt" in lines[0], stderr
    assert not marker.exists()


def test_training_resume_refuses_a_hostile_state_file(tmp_path: Path) -> None:
    """A payload in a stage's *_state.pt (what `btnet-lab train` resumes from) is refused."""
    marker = tmp_path / "PWNED"
    path = hostile_checkpoint(tmp_path / "stage2_state.pt", marker, "state")
    module = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    with pytest.raises(CheckpointError) as info:
        checkpoints.resume(path, {"m": module}, optimizer)
    assert_refused_one_line(info.value, path, marker)


def _torch_load_calls() -> list[tuple[str, int, ast.Call]]:
    calls = []
    for package in PACKAGES:
        for file in sorted((REPO / package).rglob("*.py")):
            tree = ast.parse(file.read_text(), str(file))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "torch"
                ):
                    calls.append((str(file.relative_to(REPO)), node.lineno, node))
    return calls


def test_every_torch_load_passes_weights_only_true() -> None:
    """Scans the library's source: each torch.load(...) call says weights_only=True (a new
    call without it would unpickle arbitrary code from a downloaded checkpoint)."""
    calls = _torch_load_calls()
    assert calls, "no torch.load call found: the scan is looking in the wrong place"
    unsafe = [
        f"{file}:{line}"
        for file, line, call in calls
        if not any(
            kw.arg == "weights_only"
            and isinstance(kw.value, ast.Constant)
            and kw.value.value is True
            for kw in call.keywords
        )
    ]
    assert not unsafe, f"torch.load without weights_only=True at {unsafe}"
