"""`btnet-lab train`: what a run directory holds, and bad input that writes nothing."""

import json

import numpy as np
import pytest
from PIL import Image

from btnet_lab.cli import main

TINY = [
    "--set",
    "model.width=0.0625",
    "--set",
    "model.embedding_size=16",
    "--set",
    "model.resolutions=[7]",
    "--set",
    "data.identities=8",
    "--set",
    "data.images_per_identity=4",
    "--set",
    "data.held_out=3",
    "--set",
    "stage1.epochs=1",
    "--set",
    "stage2.epochs=1",
    "--set",
    "stage1.batch_size=8",
    "--set",
    "stage2.batch_size=8",
    "--set",
    "eval.pairs=20",
    "--set",
    "eval.folds=2",
    "--set",
    "eval.resolutions=[7,112]",
]


def test_train_writes_config_metrics_trunk_and_branch_only_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    assert {p.name for p in out.iterdir()} >= {
        "config.yaml",
        "metrics.jsonl",
        "trunk.pt",
        "branch_7.pt",
        "final_metrics.json",
    }
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in lines] == ["stage1", "stage2"]
    assert all(x["images_per_s"] > 0 and x["achieved_flops"] > 0 for x in lines)
    printed = json.loads(capsys.readouterr().out)
    assert 0.0 <= printed["acc_112_7"] <= 1.0
    # A finished run is never overwritten.
    assert main(["train", "--out", str(out), *TINY]) == 2
    assert "already holds a finished run" in capsys.readouterr().err


def make_folder(root, counts, size=(20, 24)):
    rng = np.random.default_rng(0)
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, size=size, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


@pytest.mark.parametrize(
    "case,needle",
    [
        ("missing", "no such folder"),
        ("single", "needs at least 2"),
        ("corrupt", "corrupt.png"),
        ("empty", "no identity"),
    ],
)
def test_bad_data_folder_is_one_line_and_writes_nothing(tmp_path, capsys, case, needle):
    data = tmp_path / "faces"
    if case == "single":
        make_folder(data, {"a": 3, "b": 3, "c": 1})
    elif case == "corrupt":
        make_folder(data, {"a": 3, "b": 3})
        (data / "a" / "corrupt.png").write_bytes(b"not a png at all")
    elif case == "empty":
        data.mkdir()
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--out",
            str(out),
            "--set",
            "data.source=folder",
            "--set",
            f"data.path={data}",
            *TINY,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("btnet-lab: error:")
    assert needle in err, err
    assert not out.exists()


def test_bad_config_key_is_one_line_and_writes_nothing(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  insertion: {28: layer1.0}\n")
    out = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and "model.insertion.28" in err and "allowed" in err
    assert not out.exists()


def test_stage_one_trunk_is_reused_by_a_separate_stage_two_run(tmp_path):
    # A trained trunk serves later branch runs: stage 1 alone, then stage 2 with --trunk.
    first = tmp_path / "trunk_run"
    assert main(["train", "--out", str(first), "--stage", "1", *TINY]) == 0
    assert (first / "trunk.pt").exists() and not (first / "final_metrics.json").exists()
    second = tmp_path / "branch_run"
    args = ["train", "--out", str(second), "--stage", "2", "--trunk", str(first / "trunk.pt")]
    assert main([*args, *TINY]) == 0
    assert (second / "branch_7.pt").exists() and (second / "final_metrics.json").exists()
    assert not (second / "trunk.pt").exists()
