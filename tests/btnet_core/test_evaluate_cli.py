"""``btnet-lab evaluate`` on a tiny trained run: every data source and protocol gives consistent
numbers, the loaded run reproduces what training measured, and bad input is one line, exit 2."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from scipy.io import savemat

from btnet_core.config import resolve_config
from btnet_core.data import synthetic_faces
from btnet_core.evaluate import load_run, matrix_pairs, verification_matrix
from btnet_core.faces import split_faces
from btnet_core.formats import encode_image, write_recordio, write_verification_bin
from btnet_core.train import _evaluator, train
from btnet_lab.cli import main

ORL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "orl"
needs_orl = pytest.mark.skipif(
    not ORL.is_dir(), reason=f"the ORL faces are not at {ORL} (../shared/data/orl)"
)

TINY = {
    "device": "cpu",
    "model": {"width": 0.0625, "embedding_size": 32, "resolutions": [7, 14]},
    "data": {"identities": 12, "images_per_identity": 6, "held_out": 4},
    "stage1": {"epochs": 2, "batch_size": 16},
    "stage2": {"epochs": 1, "batch_size": 16},
    "eval": {"pairs": 40, "folds": 4, "resolutions": [7, 14, 112], "flip": False},
}
# The paths of a btnet run, and the settings of its full matrix at {7, 14, 112}.
PATHS = ("branch", "upsample")
MATRIX = ["112&112", "112&14", "112&7", "14&14", "14&7", "7&7"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny finished btnet run (branches 7 and 14) for the whole module."""
    out = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's two cores are shared; one thread is faster
    try:
        train(resolve_config(TINY), out)
        yield out
    finally:
        torch.set_num_threads(threads)


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def report(capsys: pytest.CaptureFixture[str], *argv: object) -> dict:
    code, out, err = cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def rows(rep: dict, **match: object) -> list[dict]:
    return [r for r in rep["rows"] if all(r[k] == v for k, v in match.items())]


def assert_consistent(rep: dict) -> None:
    """Shared checks: every value in [0, 1], the difference is branch minus upsample, and the
    settings with both faces at 112 are identical for both paths (both are the trunk)."""
    for row in rep["rows"]:
        assert row["protocol"]
        for path in PATHS:
            assert 0.0 <= row[path] <= 1.0
        assert row["difference"] == pytest.approx(row["branch"] - row["upsample"])
        if row["a"] == row["b"] == 112:
            assert row["branch"] == row["upsample"], row


def face_folder(root: Path, ids: int, per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic faces written LFW-style as root/name/name_NNNN.png (lossless)."""
    images, labels = synthetic_faces(ids, per, seed=seed)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        name = f"p{label:02d}"
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / name / f"{name}_{i % per + 1:04d}.png")
    return images, labels


def pairs_of(labels: np.ndarray, per: int) -> list[tuple[int, int, bool]]:
    """Adjacent same pairs and cross-identity different pairs, indices into the set."""
    out = []
    for k in range(labels.max() + 1):
        out.append((k * per, k * per + 1, True))
        out.append((k * per, ((k + 1) % (labels.max() + 1)) * per + 2, False))
    return out


def survface(root: Path, gallery_ids: list[int], mated: dict, unmated: list) -> Path:
    """A QMUL-SurvFace test set of synthetic faces at native sizes (w, h)."""
    faces, _ = synthetic_faces(8, 3, seed=5)
    test = root / "Face_Identification_Test_Set"
    for role in ("gallery", "mated_probe", "unmated_probe"):
        (test / role).mkdir(parents=True)

    def save(role: str, name: str, face: np.ndarray, size: tuple[int, int]) -> None:
        Image.fromarray(face).resize(size, Image.Resampling.BOX).save(test / role / name)

    gallery_names = []
    for i, k in enumerate(gallery_ids):
        gallery_names.append(f"g{i}.png")
        save("gallery", gallery_names[-1], faces[3 * k], (24, 24))
    for i, (k, size) in enumerate(mated["probes"]):
        save("mated_probe", f"m{i}.png", faces[3 * k + 1], size)
    for i, (k, size) in enumerate(unmated):
        save("unmated_probe", f"u{i}.png", faces[3 * k + 2], size)

    def cell(names: list[str]) -> np.ndarray:
        out = np.empty((len(names), 1), dtype=object)
        out[:, 0] = names
        return out

    savemat(
        test / "gallery_img_ID_pairs.mat",
        {"gallery_set": cell(gallery_names), "gallery_ids": np.array(gallery_ids, float)},
    )
    savemat(
        test / "mated_probe_img_ID_pairs.mat",
        {
            "mated_probe_set": cell([f"m{i}.png" for i in range(len(mated["probes"]))]),
            "mated_probe_ids": np.array([k for k, _ in mated["probes"]], float),
        },
    )
    return root


def derived_run(run_dir: Path, tmp_path: Path, method: str, noise_std: float = 0.0) -> Path:
    """The tiny run presented as a finished run of another kind: ``upsample`` (the trunk
    alone), ``separate`` (each resolution's model an exact copy of the trunk) or ``btnet``
    with noise in its degradation."""
    out = tmp_path / f"{method}-{noise_std}"
    out.mkdir()
    for name in ("trunk.pt", "final_metrics.json", "branch_7.pt", "branch_14.pt"):
        shutil.copy(run_dir / name, out / name)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg["method"] = method
    cfg["degrade"]["noise_std"] = noise_std
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    if method == "separate":
        for r in (7, 14):
            shutil.copy(run_dir / "trunk.pt", out / f"trunk_r{r}.pt")
    return out


def small_bin(tmp_path: Path) -> Path:
    images, _ = synthetic_faces(4, 3, seed=3)
    write_verification_bin(tmp_path / "t.bin", images[:8], [True, False, True, False])
    return tmp_path / "t.bin"


# -- verification ---------------------------------------------------------------------------------


def test_synthetic_verification_gives_the_full_matrix_and_aggregates(run_dir, capsys):
    """Synthetic faces of new identities: every a&b with a >= b, then the 112+b aggregates,
    each through branch and upsample, with protocol ids and consistent numbers."""
    rep = report(
        capsys, run_dir, "--data", "synthetic", "--protocol", "verification",
        "--identities", 10, "--images-per-identity", 4, "--pairs", 40, "--folds", 4, "--no-flip",
    )  # fmt: skip
    assert rep["paths"] == list(PATHS) and rep["resolutions"] == [7, 14, 112]
    assert "seed 10007" in rep["data"]  # the run trained on seed 0: no identity is shared
    assert [r["setting"] for r in rows(rep, kind="matrix")] == MATRIX
    assert [r["setting"] for r in rows(rep, kind="aggregate")] == ["112+14", "112+7"]
    assert {r["protocol"] for r in rows(rep, kind="matrix")} == {
        "verification/insightface-4fold-sqeuclid-noflip"
    }
    assert all("aggregate" in r["protocol"] for r in rows(rep, kind="aggregate"))
    assert all(r["n"] == 40 and r["metric"] == "accuracy" for r in rep["rows"])
    assert rep["details"] == {"pairs": 40, "same": 20}
    assert_consistent(rep)


def test_loaded_run_reproduces_the_accuracies_training_wrote(run_dir):
    """The run loaded for evaluation (trunk and branch checkpoints) gives exactly the matrix
    training measured on its own held-out pairs, for both paths."""
    cfg = resolve_config(TINY)
    evaluator = _evaluator(cfg, split_faces(cfg), torch.device("cpu"))
    run = load_run(run_dir)
    results = verification_matrix(evaluator, run.paths, matrix_pairs(evaluator.resolutions))
    final = json.loads((run_dir / "final_metrics.json").read_text())
    for (a, b), per_path in results.items():
        for path in PATHS:
            assert per_path[path].accuracy == final[f"acc_{a}_{b}_{path}"], (a, b, path)


def test_table_shows_paths_side_by_side(run_dir, capsys, tmp_path):
    """Without --json the command prints a table: the protocol id, then one row per setting
    with the branch, the upsample baseline and their difference."""
    code, out, _ = cli(capsys, run_dir, "--data", small_bin(tmp_path), "--protocol", "pairs",
                       "--folds", 2, "--no-flip")  # fmt: skip
    assert code == 0
    assert "protocol verification/insightface-2fold-sqeuclid-noflip" in out
    header = next(line for line in out.splitlines() if "setting" in line)
    assert header.split()[-3:] == ["branch", "upsample", "difference"]
    row = next(line for line in out.splitlines() if line.strip().startswith("112&112 "))
    assert row.split()[-1] == "+0.00"


def test_upsample_run_has_the_baseline_column_only(run_dir, capsys, tmp_path):
    """A run without branches shows one column, no difference, and its numbers are the btnet
    run's upsample column (same trunk, same degraded faces)."""
    common = ("--data", small_bin(tmp_path), "--protocol", "pairs", "--folds", 2)
    upsample_dir = derived_run(run_dir, tmp_path, "upsample")
    upsample_run = report(capsys, upsample_dir, *common)
    btnet_run = report(capsys, run_dir, *common)
    assert upsample_run["paths"] == ["upsample"]
    assert all(r["difference"] is None and "branch" not in r for r in upsample_run["rows"])
    assert [(r["setting"], r["upsample"]) for r in upsample_run["rows"]] == [
        (r["setting"], r["upsample"]) for r in btnet_run["rows"]
    ]
    code, out, _ = cli(capsys, upsample_dir, *common)
    assert code == 0 and "difference" not in out


def test_separate_models_equal_to_the_trunk_reproduce_the_baseline(run_dir, capsys, tmp_path):
    """The ``separate`` path embeds a face at r with the model trained at r after resizing
    to 112; with every model a copy of the trunk it must equal the baseline exactly."""
    rep = report(
        capsys, derived_run(run_dir, tmp_path, "separate"), "--data", small_bin(tmp_path),
        "--protocol", "verification", "--folds", 2,
    )  # fmt: skip
    assert rep["paths"] == ["separate", "upsample"] and rep["resolutions"] == [7, 14, 112]
    assert len(rep["rows"]) == len(MATRIX) + 2
    assert all(r["separate"] == r["upsample"] and r["difference"] == 0 for r in rep["rows"])


def test_noisy_degradation_gives_both_paths_the_same_pixels(run_dir, capsys, tmp_path):
    """With sensor noise in the run's degradation, both paths still see identical inputs
    (the 112 rows agree) and a rerun gives identical numbers (the noise is seeded)."""
    noisy = derived_run(run_dir, tmp_path, "btnet", noise_std=0.05)
    args = (noisy, "--data", "synthetic", "--protocol", "identification", "--identities", 6,
            "--images-per-identity", 3, "--resolutions", 7, "--no-flip")  # fmt: skip
    first, again = report(capsys, *args), report(capsys, *args)
    assert first["options"]["degradation"]["noise_std"] == 0.05
    assert first["rows"] == again["rows"]
    assert_consistent(first)


def test_bin_pairs_txt_and_csv_of_the_same_faces_agree(run_dir, capsys, tmp_path):
    """The same pairs of the same (lossless) faces as a .bin, as an LFW pairs.txt over an
    image folder and as a pairs CSV inside it (its folder is the root) give identical rows."""
    per = 3
    images, labels = face_folder(tmp_path / "lfw", 6, per, seed=11)
    pairs = pairs_of(labels, per)
    flat = [images[i] for a, b, _ in pairs for i in (a, b)]
    flags = [same for _, _, same in pairs]
    write_verification_bin(tmp_path / "set.bin", flat, flags, image_format="png")
    # A one-number header N announces N same and N different pairs.
    lines = [f"{len(pairs) // 2}"]
    for a, b, same in pairs:
        n1, n2 = f"p{labels[a]:02d}", f"p{labels[b]:02d}"
        i, j = a % per + 1, b % per + 1
        lines.append(f"{n1} {i} {j}" if same else f"{n1} {i} {n2} {j}")
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    csv = ["img1,img2,same"]
    for a, b, same in pairs:
        n1, n2 = f"p{labels[a]:02d}", f"p{labels[b]:02d}"
        csv.append(f"{n1}/{n1}_{a % per + 1:04d}.png,{n2}/{n2}_{b % per + 1:04d}.png,{int(same)}")
    (tmp_path / "lfw" / "pairs.csv").write_text("\n".join(csv) + "\n")
    common = ("--protocol", "pairs", "--folds", 3, "--no-flip", "--resolutions", 7)
    from_bin = report(capsys, run_dir, "--data", tmp_path / "set.bin", *common)
    from_txt = report(
        capsys, run_dir, "--data", tmp_path / "pairs.txt", "--root", tmp_path / "lfw", *common
    )
    from_csv = report(capsys, run_dir, "--data", tmp_path / "lfw" / "pairs.csv", *common)
    assert len(from_bin["rows"]) == 4  # 112&112, 112&7, 7&7, 112+7
    assert from_bin["rows"] == from_txt["rows"] == from_csv["rows"]
    assert_consistent(from_bin)


@needs_orl
def test_orl_verification(run_dir, capsys):
    """Real faces (ORL, 92x112 greyscale, padded to 112): pairs drawn from the folder."""
    rep = report(
        capsys, run_dir, "--data", ORL, "--protocol", "verification",
        "--resolutions", 7, "--pairs", 120, "--folds", 5, "--no-flip",
    )  # fmt: skip
    assert [r["setting"] for r in rep["rows"]] == ["112&112", "112&7", "7&7", "112+7"]
    assert rep["details"] == {"pairs": 120, "same": 60}
    assert "400 images, 40 identities" in rep["data"]
    assert_consistent(rep)


# -- identification -------------------------------------------------------------------------------


@needs_orl
def test_orl_identification(run_dir, capsys):
    """Closed set on ORL: gallery = first 5 images of each person at 112, probes = the other
    five at each resolution; the CMC never decreases with the rank."""
    rep = report(
        capsys, run_dir, "--data", ORL, "--protocol", "identification",
        "--resolutions", 7, "--gallery-images", 5, "--no-flip",
    )  # fmt: skip
    assert rep["details"] == {"identities": 40, "gallery_images": 200, "probes": 200}
    assert {r["protocol"] for r in rep["rows"]} == {
        "identification/closed-set-cmc-prototype-cosine"
    }
    for setting in ("112&7", "112&112"):
        got = rows(rep, setting=setting)
        assert [r["metric"] for r in got] == ["rank-1", "rank-5", "rank-10", "rank-20"]
        assert all(r["n"] == 200 for r in got)
        for path in PATHS:
            cmc = [r[path] for r in got]
            assert cmc == sorted(cmc), (setting, path, cmc)
    assert_consistent(rep)


@needs_orl
def test_orl_open_set(run_dir, capsys):
    """Open set on ORL: a seeded quarter of the people is left out of the gallery; TPIR20
    never increases as the FPIR target falls, and the AUC is a fraction."""
    rep = report(
        capsys, run_dir, "--data", ORL, "--protocol", "openset", "--resolutions", 7,
        "--gallery-images", 5, "--unmated-share", 0.25, "--no-flip",
    )  # fmt: skip
    assert rep["details"] == {
        "enrolled_identities": 30,
        "unmated_identities": 10,
        "gallery_images": 150,
        "mated_probes": 150,
        "unmated_probes": 100,
    }
    for setting in ("112&7", "112&112"):
        got = rows(rep, setting=setting)
        assert [r["metric"] for r in got] == [
            "tpir20@fpir=0.3",
            "tpir20@fpir=0.2",
            "tpir20@fpir=0.1",
            "tpir20@fpir=0.01",
            "auc",
        ]
        for path in PATHS:
            tpir = [r[path] for r in got[:4]]
            assert tpir == sorted(tpir, reverse=True), (setting, path, tpir)
            for r in got[:4]:
                assert r[f"{path}_achieved_fpir"] <= float(r["metric"].split("=")[1])
    assert {r["protocol"] for r in rep["rows"]} == {
        "identification/open-set-prototype-cosine-tpir20-exact"
    }
    assert_consistent(rep)


def test_recordio_and_image_folder_of_the_same_faces_agree(run_dir, capsys, tmp_path):
    """Identification on a RecordIO file equals identification on the same faces stored as
    an image folder (PNG in both: lossless)."""
    images, labels = face_folder(tmp_path / "faces", 5, 3, seed=21)
    write_recordio(tmp_path / "t.rec", tmp_path / "t.idx", images, labels, image_format="png")
    common = ("--protocol", "identification", "--resolutions", 14, "--no-flip")
    from_rec = report(capsys, run_dir, "--data", tmp_path / "t.rec", *common)
    from_folder = report(capsys, run_dir, "--data", tmp_path / "faces", *common)
    assert from_rec["rows"] == from_folder["rows"]
    assert from_rec["details"] == {"identities": 5, "gallery_images": 5, "probes": 10}
    assert_consistent(from_rec)


# -- QMUL-SurvFace: native-size probes routed to a branch -----------------------------------------

MATED = {"probes": [(0, (6, 5)), (1, (12, 10)), (2, (24, 20)), (3, (40, 36))]}
UNMATED = [(5, (8, 8)), (6, (30, 20))]


@pytest.mark.parametrize(
    ("indicator", "rule", "mated", "unmated"),
    [
        # max side 6, 12, 24, 40 and 8, 30; the run's resolutions are 7, 14 and 112
        ("max", "ceil", {"7": 1, "14": 1, "112": 2}, {"7": 0, "14": 1, "112": 1}),
        # min side 5, 10, 20, 36 and 8, 20
        ("min", "floor", {"7": 2, "14": 2, "112": 0}, {"7": 1, "14": 1, "112": 0}),
    ],
)
def test_survface_open_set_routes_probes_by_indicator_and_rule(
    run_dir, capsys, tmp_path, indicator, rule, mated, unmated
):
    """Each native-size probe goes to the resolution its indicator and rule choose; the
    result is one open-set setting, 112&routed, for both paths."""
    root = survface(tmp_path / "sf", [0, 0, 1, 2, 3], MATED, UNMATED)
    rep = report(capsys, run_dir, "--data", root, "--protocol", "openset",
                 "--indicator", indicator, "--rule", rule)  # fmt: skip
    assert rep["details"]["routing"] == {"mated": mated, "unmated": unmated}
    assert {r["setting"] for r in rep["rows"]} == {"112&routed"}
    assert [r["metric"] for r in rep["rows"]][-1] == "auc"
    assert all(r["n"] == 4 for r in rep["rows"])
    assert_consistent(rep)


def test_survface_identification_ranks_mated_probes(run_dir, capsys, tmp_path):
    """Closed set on a SurvFace layout: its gallery against its routed mated probes."""
    root = survface(tmp_path / "sf", [0, 0, 1, 2, 3], MATED, UNMATED)
    rep = report(capsys, run_dir, "--data", root, "--protocol", "identification")
    assert [r["metric"] for r in rep["rows"]] == ["rank-1", "rank-5", "rank-10", "rank-20"]
    # Four gallery identities: every mated probe is within rank 5.
    assert rows(rep, metric="rank-5")[0]["branch"] == 1.0
    assert_consistent(rep)


# -- bad input ------------------------------------------------------------------------------------


def bad_bin(tmp_path: Path) -> tuple[list, str]:
    png = encode_image(np.zeros((8, 8, 3), np.uint8), "png")
    (tmp_path / "bad.bin").write_bytes(pickle.dumps(([png] * 3, [True]), protocol=4))
    return ["--data", tmp_path / "bad.bin", "--protocol", "pairs"], "3 images and 1 is-same"


def missing_pair_image(tmp_path: Path) -> tuple[list, str]:
    face_folder(tmp_path / "lfw", 2, 2, seed=1)
    (tmp_path / "pairs.txt").write_text("p00 1 2\np00 1 p07 1\n")
    args = ["--data", tmp_path / "pairs.txt", "--root", tmp_path / "lfw", "--protocol", "pairs"]
    return args, "p07_0001.png not found"


def empty_gallery(tmp_path: Path) -> tuple[list, str]:
    root = survface(tmp_path / "sf", [0], MATED, UNMATED)
    savemat(
        root / "Face_Identification_Test_Set" / "gallery_img_ID_pairs.mat",
        {"gallery_set": np.empty((0, 1), object), "gallery_ids": np.empty((0, 1))},
    )
    return ["--data", root, "--protocol", "openset"], "the gallery is empty"


def recordio(tmp_path: Path, damage: str) -> tuple[list, str]:
    images, labels = synthetic_faces(2, 2, seed=1)
    rec = tmp_path / "t.rec"
    write_recordio(rec, tmp_path / "t.idx", images, labels, image_format="png")
    data = rec.read_bytes()
    if damage == "truncated":
        rec.write_bytes(data[: len(data) // 2])
        return ["--data", rec, "--protocol", "identification"], "beyond the end of"
    rec.write_bytes(data[:8] + bytes(len(data) - 8))  # records without the magic word
    return ["--data", rec, "--protocol", "identification"], "no RecordIO magic"


BAD_INPUTS = {
    "missing data": lambda p: (
        ["--data", p / "nowhere", "--protocol", "verification"],
        "no such file or folder",
    ),
    "bin with mismatched counts": bad_bin,
    "pairs naming a missing image": missing_pair_image,
    "empty gallery": empty_gallery,
    "truncated recordio": lambda p: recordio(p, "truncated"),
    "corrupt recordio": lambda p: recordio(p, "corrupt"),
    "protocol the data cannot serve": lambda p: (
        ["--data", bad_bin(p)[0][1], "--protocol", "identification"],
        "serves --protocol",
    ),
    "resolution without a branch": lambda p: (
        ["--data", "synthetic", "--protocol", "verification", "--resolutions", 28],
        "no branch path for 28x28",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(run_dir, capsys, tmp_path, case):
    """Each bad input ends the command with one line naming the problem, status 2, no
    traceback and nothing on stdout."""
    args, expected = BAD_INPUTS[case](tmp_path)
    code, out, err = cli(capsys, run_dir, *args)
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if line.startswith("btnet-lab: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert expected in errors[0], errors[0]


def test_unfinished_run_is_refused(run_dir, capsys, tmp_path):
    """A run directory without final_metrics.json (training stopped) is refused."""
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "trunk.pt"):
        shutil.copy(run_dir / name, unfinished / name)
    code, out, err = cli(capsys, unfinished, "--data", "synthetic", "--protocol", "verification")
    assert code == 2 and out == ""
    assert "unfinished run (no final_metrics.json)" in err.strip().splitlines()[-1]
