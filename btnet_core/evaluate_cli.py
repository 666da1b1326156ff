"""The ``evaluate`` sub-command of ``btnet-lab``: a finished run on the field's protocols.

    btnet-lab evaluate RUN_DIR --data PATH --protocol verification|pairs|identification|openset
        [--resolutions 7 14 28 112] [--json]

Every number is shown for the run's own path (its branches, or its separate models) beside the
upsample-to-112 baseline of the same trunk on the same degraded faces, with the difference:

* ``verification``: the cross-resolution matrix, every "a&b" with ``a >= b`` (first face of a
  pair at ``a``, second at ``b``, each through its path), 10-fold accuracy; plus BTNet's
  feature aggregation "112+b": feature = trunk(face at 112) + path(flipped face at ``b``).
  Pairs come from a ``.bin`` (adjacent), a pair list, or are drawn from labelled faces.
* ``pairs``: the same on an explicit pair list (``.bin``, LFW ``pairs.txt``, pairs ``.csv``).
* ``identification``: closed-set rank-1/5/10/20; gallery = the first image of each identity at
  112 through the trunk, probes = the others at each resolution. On a SurvFace layout: its
  gallery and its mated probes, routed by their native size.
* ``openset``: TPIR20 at FPIR 0.3/0.2/0.1/0.01 and the AUC. On a SurvFace layout: its gallery,
  mated and unmated probes, each probe routed to a resolution by ``--indicator`` and ``--rule``
  (BTNet's intervals). On labelled faces: a seeded split of the identities into enrolled and
  unmated ones, probes at each resolution.

``--data`` takes the word ``synthetic`` (built-in synthetic faces drawn with another seed than
training, so every identity is new), an image folder (one sub-folder per identity), an
InsightFace ``.rec`` (or a folder holding ``train.rec``), a verification ``.bin``, a pair list
(``.txt`` / ``.csv``, images under its folder or ``--root``) or a QMUL-SurvFace root. Faces of
another size than 112 are fitted to 112 as image folders are (pad to square, PIL resize); every
low-resolution input then comes from the run's own degradation.

A user's mistake (unfinished run, missing or corrupt data, an option that does not fit) raises
a :class:`~btnet_core.errors.BTNetError`: one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from btnet_core.errors import ConfigError, DataError
from btnet_core.evaluate import (
    BASELINE_PATH,
    Evaluator,
    FaceEmbedder,
    PairSet,
    Run,
    aggregate_accuracies,
    cross_resolution_pairs,
    degradation_of,
    fit_face,
    identification,
    load_run,
    open_set,
    verification_matrix,
)
from btnet_core.metrics import OpenSetResult, RankResult, VerificationResult, route_resolution
from btnet_core.model import TRUNK_INPUT

# The readers (btnet_core.formats, which loads scipy) and the face sets are imported when the
# command runs: this module is imported to build the parser of every btnet-lab command.

log = logging.getLogger(__name__)

PROTOCOLS = ("verification", "pairs", "identification", "openset")
RANKS = (1, 5, 10, 20)
FPIRS = (0.3, 0.2, 0.1, 0.01)
#: Added to the run's seed to draw ``--data synthetic``: identity ``k`` of the synthetic set is
#: a function of (seed, k), so another seed gives faces no training image was drawn from.
SYNTHETIC_SEED_OFFSET = 10007
#: Which protocols each kind of ``--data`` serves.
SOURCES: dict[str, tuple[str, ...]] = {
    "synthetic": ("verification", "identification", "openset"),
    "folder": ("verification", "identification", "openset"),
    "recordio": ("verification", "identification", "openset"),
    "bin": ("verification", "pairs"),
    "pairs": ("verification", "pairs"),
    "survface": ("identification", "openset"),
}
_SOURCE_NAMES = {
    "synthetic": "the synthetic faces",
    "folder": "an image folder",
    "recordio": "a RecordIO file",
    "bin": "a verification .bin",
    "pairs": "a pair list",
    "survface": "a QMUL-SurvFace layout",
}


def add_evaluate_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``btnet-lab evaluate``; its handler is ``args.handler(args) -> int``."""
    p = subparsers.add_parser(
        "evaluate",
        help="evaluate a finished run: branch vs upsample at every resolution",
        description="Evaluate a finished run on verification, pair lists, closed-set or "
        "open-set identification: the run's path (branches) beside the upsample-to-112 "
        "baseline at every resolution, with the difference.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished run (btnet-lab train --out)")
    p.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="'synthetic', an image folder, a .rec, a verification .bin, a pairs .txt/.csv, "
        "or a QMUL-SurvFace root",
    )
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument(
        "--resolutions",
        type=int,
        nargs="+",
        metavar="R",
        help="probe resolutions (112 is always added); default: the run's branches, or its "
        "eval.resolutions",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--root", help="image folder of a pair list (default: the list's folder)")
    p.add_argument(
        "--pairs", type=int, default=600, metavar="N", help="pairs drawn from labelled faces"
    )
    p.add_argument("--folds", type=int, default=10, metavar="N", help="folds (default: 10)")
    p.add_argument(
        "--no-flip",
        dest="flip",
        action="store_false",
        help="embed faces alone, not face + flipped face",
    )
    p.add_argument(
        "--gallery-images",
        type=int,
        default=1,
        metavar="N",
        help="gallery images per identity of labelled faces (the first ones)",
    )
    p.add_argument(
        "--unmated-share",
        type=float,
        default=0.5,
        metavar="F",
        help="openset on labelled faces: share of identities left out of the gallery",
    )
    p.add_argument(
        "--indicator",
        choices=("max", "avg", "min"),
        default="max",
        help="SurvFace: the size of a native-size probe that routes it: max, mean or min of "
        "its width and height (default: max)",
    )
    p.add_argument(
        "--rule",
        choices=("ceil", "near", "floor"),
        default="ceil",
        help="SurvFace: the resolution a size goes to: the next one up, the nearest, or the "
        "next one down (BTNet's intervals; default: ceil)",
    )
    p.add_argument(
        "--rank", type=int, default=20, metavar="K", help="openset rank cut-off (TPIR20: 20)"
    )
    p.add_argument(
        "--sweep",
        choices=("exact", "btnet-linspace1000"),
        default="exact",
        help="openset threshold sweep (btnet-linspace1000: the authors' grid)",
    )
    p.add_argument(
        "--identities", type=int, default=50, metavar="N", help="--data synthetic: identities"
    )
    p.add_argument(
        "--images-per-identity",
        type=int,
        default=8,
        metavar="N",
        help="--data synthetic: images of each",
    )
    p.add_argument("--seed", type=int, help="seed of pairs, splits and noise (default: the run's)")
    p.add_argument("--batch-size", type=int, default=128, metavar="N", help="default: 128")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(handler=cmd_evaluate)


# ---------------------------------------------------------------------------------------------
# The data behind --data


@dataclass
class LabelledFaces:
    """Faces at 112 with an identity label each (synthetic, image folder, RecordIO)."""

    images: np.ndarray
    labels: np.ndarray
    description: str


@dataclass
class SurvFaceFaces:
    """A QMUL-SurvFace test set: the gallery fitted to 112, probes at their native size."""

    gallery: np.ndarray
    gallery_ids: np.ndarray
    mated: list[np.ndarray]
    mated_ids: np.ndarray
    unmated: list[np.ndarray]
    description: str


def source_kind(data: str) -> str:
    """What ``--data`` names: one of the keys of :data:`SOURCES`.

    Raises:
        DataError: The path does not exist or is a file of no known kind.
    """
    if data == "synthetic":
        return "synthetic"
    path = Path(data)
    if not path.exists():
        raise DataError(
            f"{data}: no such file or folder; --data takes 'synthetic', an image folder, a "
            ".rec, a verification .bin, a pairs .txt/.csv or a QMUL-SurvFace root"
        )
    if path.is_file():
        kinds = {".bin": "bin", ".txt": "pairs", ".csv": "pairs", ".rec": "recordio"}
        kind = kinds.get(path.suffix.lower())
        if kind is None:
            raise DataError(
                f"{data}: a file of unknown kind; allowed files: .bin (verification pairs), "
                ".txt or .csv (pair lists), .rec (RecordIO)"
            )
        return kind
    if (path / "Face_Identification_Test_Set").is_dir() or all(
        (path / d).is_dir() for d in ("gallery", "mated_probe", "unmated_probe")
    ):
        return "survface"
    if (path / "train.rec").is_file():
        return "recordio"
    return "folder"


def _read_image(path: Path) -> np.ndarray:
    from btnet_core.formats import decode_image

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the image ({exc.strerror})") from None
    return decode_image(data, str(path))


def load_labelled(kind: str, data: str, args: argparse.Namespace, run_seed: int) -> LabelledFaces:
    """The labelled faces of a synthetic, image-folder or RecordIO ``--data``."""
    from btnet_core.data import load_image_folder, synthetic_faceset

    if kind == "synthetic":
        seed = run_seed + SYNTHETIC_SEED_OFFSET
        fs = synthetic_faceset(args.identities, args.images_per_identity, TRUNK_INPUT, seed=seed)
        description = (
            f"synthetic faces, {args.identities} identities x {args.images_per_identity}, seed "
            f"{seed} (the run's seed {run_seed} + {SYNTHETIC_SEED_OFFSET}: no training identity)"
        )
        return LabelledFaces(fs.images, fs.labels, description)
    if kind == "folder":
        fs = load_image_folder(data, size=TRUNK_INPUT)
        description = f"image folder {data} ({len(fs)} images, {fs.num_identities} identities)"
        return LabelledFaces(fs.images, fs.labels, description)
    from btnet_core.formats import RecordIOReader

    path = Path(data)
    rec = path if path.is_file() else path / "train.rec"
    # The whole set is read into memory at 112x112 (37 KB a face): fine for evaluation sets;
    # a training-sized file (MS1MV3) needs a subset packed first.
    with RecordIOReader(rec) as reader:
        labels = np.asarray(reader.labels, dtype=np.int64)
        log.info("reading %d faces from %s", len(labels), rec)
        images = np.stack([fit_face(reader[i][0]) for i in range(len(reader))])
    _, labels = np.unique(labels, return_inverse=True)
    n_ids = int(labels.max()) + 1 if len(labels) else 0
    description = f"RecordIO {rec} ({len(labels)} images, {n_ids} identities)"
    return LabelledFaces(images, labels.astype(np.int64), description)


def load_pair_list(kind: str, data: str, root: str | None) -> tuple[PairSet, str]:
    """A ``.bin`` or a pair list as a :class:`~btnet_core.evaluate.PairSet` (faces at 112)."""
    from btnet_core.formats import read_pairs_csv, read_pairs_txt, read_verification_bin

    path = Path(data)
    if kind == "bin":
        images, issame = read_verification_bin(path)
        faces = np.stack([fit_face(image) for image in images])
        n = len(issame)
        pairs = PairSet(faces, np.arange(0, 2 * n, 2), np.arange(1, 2 * n, 2), issame)
        return pairs, f"verification .bin {path} ({n} pairs, {int(issame.sum())} same)"
    folder = Path(root) if root is not None else path.parent
    reader = read_pairs_csv if path.suffix.lower() == ".csv" else read_pairs_txt
    paths1, paths2, issame = reader(path, folder)
    unique = sorted(set(paths1) | set(paths2))
    where = {p: i for i, p in enumerate(unique)}
    faces = np.stack([fit_face(_read_image(p)) for p in unique])
    pairs = PairSet(
        faces,
        np.array([where[p] for p in paths1]),
        np.array([where[p] for p in paths2]),
        np.asarray(issame, dtype=bool),
    )
    description = (
        f"pair list {path} over {folder} ({len(issame)} pairs, {int(issame.sum())} same, "
        f"{len(unique)} images)"
    )
    return pairs, description


def load_survface(data: str) -> SurvFaceFaces:
    """A QMUL-SurvFace test set; probes are kept at their native size for routing."""
    from btnet_core.formats import read_survface

    s = read_survface(data)
    gallery = np.stack([fit_face(_read_image(p)) for p in s.gallery_paths])
    mated = [_read_image(p) for p in s.mated_paths]
    unmated = [_read_image(p) for p in s.unmated_paths]
    description = (
        f"QMUL-SurvFace {data} (gallery {len(gallery)} images of "
        f"{len(np.unique(s.gallery_ids))} identities, {len(mated)} mated and {len(unmated)} "
        "unmated probes)"
    )
    return SurvFaceFaces(gallery, s.gallery_ids, mated, s.mated_ids, unmated, description)


def gallery_split(
    labels: np.ndarray, per_identity: int, description: str, protocol: str, min_identities: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the gallery (the first ``per_identity`` images of each identity, in set
    order) and of the probes (every other image).

    Raises:
        DataError: Fewer than ``min_identities`` identities, or no image left for a probe.
    """
    order = np.argsort(labels, kind="stable")
    _, starts = np.unique(labels[order], return_index=True)
    position = np.empty(len(labels), dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(order)])
    position[order] = np.arange(len(labels)) - np.repeat(starts, sizes)  # rank in identity
    gallery = np.flatnonzero(position < per_identity)
    probes = np.flatnonzero(position >= per_identity)
    if len(np.unique(labels)) < min_identities:
        raise DataError(
            f"{description}: {protocol} needs at least {min_identities} gallery identities"
        )
    if not len(probes):
        raise DataError(
            f"{description}: no probes, every identity has at most {per_identity} image(s) and "
            f"they all go to the gallery (--gallery-images {per_identity})"
        )
    return gallery, probes


# ---------------------------------------------------------------------------------------------
# Results as rows


@dataclass
class Report:
    """What ``btnet-lab evaluate`` prints: the set-up and one row per setting and metric.

    Each row holds ``setting`` (``"112&7"``, ``"112+7"`` for an aggregate, ``"112&routed"``),
    ``a`` and ``b`` (the first face's or gallery's resolution, and the second's or the probe's:
    an integer, or ``"routed"``), ``kind``, ``metric``, ``protocol`` (the metric's protocol id),
    ``n``, the value of every path under its name (``branch``, ``upsample``, ...), extras such
    as ``branch_std``, and ``difference`` (own path minus baseline; ``null`` for a run whose
    only path is the baseline). Values are fractions in [0, 1].

    ``notes`` explain the set-up in words; ``details`` hold the same counts for programs:
    ``pairs``/``same`` (verification), ``identities``/``gallery_images``/``probes``
    (identification), ``enrolled_identities``/``unmated_identities``/``gallery_images``/
    ``mated_probes``/``unmated_probes`` (open set), and ``routing`` (SurvFace: probes per
    resolution, ``{"mated": {"7": n, ...}, "unmated": {...}}``).
    """

    run: str
    method: str
    paths: list[str]
    primary: str
    baseline: str
    protocol: str
    data: str
    resolutions: list[int]
    options: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        setting: str,
        a: int | str,
        b: int | str,
        kind: str,
        metric: str,
        protocol: str,
        n: int,
        values: Mapping[str, float],
        extras: Mapping[str, float] | None = None,
    ) -> None:
        """Append one row (see the class doc)."""
        row: dict[str, Any] = {
            "setting": setting,
            "a": a,
            "b": b,
            "kind": kind,
            "metric": metric,
            "protocol": protocol,
            "n": int(n),
        }
        # "+ 0.0" turns a negative zero (an AUC of an empty sweep) into 0.0.
        row.update({path: float(v) + 0.0 for path, v in values.items()})
        row.update({k: float(v) + 0.0 for k, v in (extras or {}).items()})
        own = self.primary != self.baseline
        difference = float(values[self.primary] - values[self.baseline]) + 0.0
        row["difference"] = difference if own else None
        self.rows.append(row)


def _option(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{k} {_option(v)}" for k, v in value.items()) + ")"
    return str(value)


def format_table(report: Report) -> str:
    """The report as a readable table: one block per protocol id, values in percent."""
    lines = [
        f"run {report.run} (method {report.method}): "
        + " vs ".join(report.paths)
        + f", resolutions {', '.join(map(str, report.resolutions))}",
        f"data: {report.data}",
        "options: " + ", ".join(f"{k} {_option(v)}" for k, v in report.options.items()),
        *report.notes,
    ]
    columns = report.paths + (["difference"] if report.primary != report.baseline else [])
    width = 15
    current = None
    for row in report.rows:
        if row["protocol"] != current:
            current = row["protocol"]
            lines += ["", f"protocol {current}"]
            lines.append(
                f"  {'setting':<12} {'metric':<16} {'n':>6}"
                + "".join(f" {c:>{width}}" for c in columns)
            )
        cells = []
        for c in columns:
            value = row[c]
            if c == "difference":
                cells.append(f"{100 * value:+.2f}")
            elif f"{c}_std" in row:
                cells.append(f"{100 * value:.2f} ± {100 * row[f'{c}_std']:.2f}")
            else:
                cells.append(f"{100 * value:.2f}")
        lines.append(
            f"  {row['setting']:<12} {row['metric']:<16} {row['n']:>6}"
            + "".join(f" {cell:>{width}}" for cell in cells)
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The protocols


def _verification(
    run: Run, pairs: PairSet, report: Report, args: argparse.Namespace, seed: int
) -> None:
    """The cross-resolution matrix, then the 112+b aggregates, as rows of the report."""
    n = len(pairs.issame)
    if not 2 <= args.folds <= n:
        raise ConfigError(f"--folds {args.folds}: needs 2 <= folds <= {n}, the number of pairs")
    evaluator = Evaluator(
        pairs,
        report.resolutions,
        degradation_of(run.cfg),
        run.device,
        folds=args.folds,
        flip=args.flip,
        batch_size=args.batch_size,
        seed=seed,
    )
    report.details.update(pairs=n, same=int(np.sum(pairs.issame)))
    report.notes.append(
        f"pairs: {n} ({int(np.sum(pairs.issame))} same); a&b: first face at a, second at b"
    )
    settings = cross_resolution_pairs(report.resolutions)
    log.info("verification: %d pairs, settings %s", n, " ".join(f"{a}&{b}" for a, b in settings))
    for (a, b), results in verification_matrix(evaluator, run.paths, settings).items():
        _add_verification(report, f"{a}&{b}", a, b, "matrix", results)
    low = sorted((r for r in report.resolutions if r != TRUNK_INPUT), reverse=True)
    if low:
        report.notes.append(
            "112+b (aggregate): feature = trunk(face at 112) + path(flipped face at b)"
        )
    for b, results in aggregate_accuracies(evaluator, run.paths, run.trunk, low).items():
        _add_verification(report, f"{TRUNK_INPUT}+{b}", TRUNK_INPUT, b, "aggregate", results)


def _add_verification(
    report: Report,
    setting: str,
    a: int,
    b: int,
    kind: str,
    results: Mapping[str, VerificationResult],
) -> None:
    first = next(iter(results.values()))
    report.add(
        setting,
        a,
        b,
        kind,
        "accuracy",
        first.protocol,
        first.n_pairs,
        {p: r.accuracy for p, r in results.items()},
        {f"{p}_std": r.std for p, r in results.items()},
    )


def _add_rank(
    report: Report, setting: str, a: int, b: int | str, results: Mapping[str, RankResult]
) -> None:
    first = next(iter(results.values()))
    for k in first.cmc:
        report.add(
            setting,
            a,
            b,
            "closed-set",
            f"rank-{k}",
            first.protocol,
            first.n_probes,
            {p: r.cmc[k] for p, r in results.items()},
        )


def _add_open_set(
    report: Report, setting: str, a: int, b: int | str, results: Mapping[str, OpenSetResult]
) -> None:
    first = next(iter(results.values()))
    for target in first.tpir:
        report.add(
            setting,
            a,
            b,
            "open-set",
            f"tpir{first.rank}@fpir={target:g}",
            first.protocol,
            first.n_mated,
            {p: r.tpir[target] for p, r in results.items()},
            {f"{p}_achieved_fpir": r.achieved_fpir[target] for p, r in results.items()},
        )
    report.add(
        setting,
        a,
        b,
        "open-set",
        "auc",
        first.protocol,
        first.n_mated,
        {p: r.auc for p, r in results.items()},
    )


def _route(
    faces: Sequence[np.ndarray], resolutions: list[int], args: argparse.Namespace
) -> np.ndarray:

    return np.array(
        [
            route_resolution(f.shape[1], f.shape[0], args.indicator, args.rule, resolutions)
            for f in faces
        ],
        dtype=np.int64,
    )


def _note_routing(report: Report, args: argparse.Namespace, **routed: np.ndarray) -> None:
    """Record how many probes of each set went to each resolution."""
    counts = {
        name: {str(r): int(np.sum(res == r)) for r in report.resolutions}
        for name, res in routed.items()
    }
    report.details["routing"] = counts
    text = "; ".join(
        f"{name} " + ", ".join(f"{r}: {c}" for r, c in per.items()) for name, per in counts.items()
    )
    report.notes.append(
        f"probes routed by the {args.indicator} indicator and the {args.rule} rule: {text}"
    )


def _identification(
    data: LabelledFaces | SurvFaceFaces,
    embedder: FaceEmbedder,
    report: Report,
    args: argparse.Namespace,
) -> None:

    if isinstance(data, SurvFaceFaces):
        gallery = embedder.gallery(data.gallery)
        routed = _route(data.mated, report.resolutions, args)
        _note_routing(report, args, mated=routed)
        results = identification(
            embedder, gallery, data.gallery_ids, data.mated, data.mated_ids, routed, RANKS
        )
        _add_rank(report, f"{TRUNK_INPUT}&routed", TRUNK_INPUT, "routed", results)
        return
    g, q = gallery_split(data.labels, args.gallery_images, data.description, "identification", 2)
    report.details.update(
        identities=len(np.unique(data.labels)), gallery_images=len(g), probes=len(q)
    )
    report.notes.append(
        f"gallery: the first {args.gallery_images} image(s) of each of "
        f"{len(np.unique(data.labels))} identities ({len(g)} images) at 112 through the trunk; "
        f"probes: the other {len(q)} images"
    )
    gallery = embedder.gallery(data.images[g])
    for r in report.resolutions:
        log.info("identification: probes at %dx%d", r, r)
        results = identification(
            embedder, gallery, data.labels[g], data.images[q], data.labels[q], r, RANKS
        )
        _add_rank(report, f"{TRUNK_INPUT}&{r}", TRUNK_INPUT, r, results)


def _openset(
    data: LabelledFaces | SurvFaceFaces,
    embedder: FaceEmbedder,
    report: Report,
    args: argparse.Namespace,
    seed: int,
) -> None:

    options = {"fpirs": FPIRS, "rank": args.rank, "sweep": args.sweep}
    if isinstance(data, SurvFaceFaces):
        gallery = embedder.gallery(data.gallery)
        mated_r = _route(data.mated, report.resolutions, args)
        unmated_r = _route(data.unmated, report.resolutions, args)
        _note_routing(report, args, mated=mated_r, unmated=unmated_r)
        results = open_set(
            embedder,
            gallery,
            data.gallery_ids,
            data.mated,
            data.mated_ids,
            data.unmated,
            mated_r,
            unmated_r,
            **options,
        )
        _add_open_set(report, f"{TRUNK_INPUT}&routed", TRUNK_INPUT, "routed", results)
        return
    if not 0 < args.unmated_share < 1:
        raise ConfigError(f"--unmated-share {args.unmated_share}: must be in (0, 1)")
    ids = np.unique(data.labels)
    if len(ids) < 2:
        raise DataError(f"{data.description}: openset needs at least 2 identities")
    n_unmated = min(len(ids) - 1, max(1, round(args.unmated_share * len(ids))))
    unmated_ids = np.random.default_rng([seed, 4099]).permutation(ids)[:n_unmated]
    is_unmated = np.isin(data.labels, unmated_ids)
    enrolled = np.flatnonzero(~is_unmated)
    g, q = gallery_split(
        data.labels[enrolled], args.gallery_images, data.description, "openset", 1
    )
    g, q = enrolled[g], enrolled[q]
    u = np.flatnonzero(is_unmated)
    report.details.update(
        enrolled_identities=len(ids) - n_unmated,
        unmated_identities=n_unmated,
        gallery_images=len(g),
        mated_probes=len(q),
        unmated_probes=len(u),
    )
    report.notes.append(
        f"enrolled: {len(ids) - n_unmated} identities (seeded split, seed {seed}), gallery: "
        f"their first {args.gallery_images} image(s) at 112 through the trunk ({len(g)}); "
        f"mated probes: their other {len(q)} images; unmated probes: the {len(u)} images of "
        f"{n_unmated} other identities"
    )
    gallery = embedder.gallery(data.images[g])
    for r in report.resolutions:
        log.info("open-set identification: probes at %dx%d", r, r)
        results = open_set(
            embedder,
            gallery,
            data.labels[g],
            data.images[q],
            data.labels[q],
            data.images[u],
            r,
            r,
            **options,
        )
        _add_open_set(report, f"{TRUNK_INPUT}&{r}", TRUNK_INPUT, r, results)


# ---------------------------------------------------------------------------------------------
# The command


def _check_options(args: argparse.Namespace, kind: str) -> None:
    if args.protocol not in SOURCES[kind]:
        fits = ", ".join(
            _SOURCE_NAMES[k] for k, protocols in SOURCES.items() if args.protocol in protocols
        )
        raise ConfigError(
            f"--protocol {args.protocol}: {args.data} is {_SOURCE_NAMES[kind]}, which serves "
            f"--protocol {' or '.join(SOURCES[kind])}; {args.protocol} needs one of: {fits}"
        )
    for name, value, low in (
        ("--pairs", args.pairs, 2),
        ("--batch-size", args.batch_size, 1),
        ("--gallery-images", args.gallery_images, 1),
        ("--rank", args.rank, 1),
        ("--identities", args.identities, 2),
        ("--images-per-identity", args.images_per_identity, 2),
    ):
        if value < low:
            raise ConfigError(f"{name} {value}: must be at least {low}")
    if args.root is not None and kind != "pairs":
        raise ConfigError(f"--root: only a pair list (.txt/.csv) takes it, not {args.data}")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"--device {name}: not a device; allowed: auto, cpu, cuda, cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available here; use cpu or auto")
    return device


def evaluate_run(args: argparse.Namespace) -> Report:
    """Run the evaluation ``args`` describes (the parsed options of ``btnet-lab evaluate``)."""
    kind = source_kind(args.data)
    _check_options(args, kind)
    run = load_run(args.run_dir, _device(args.device))
    resolutions = run.check_resolutions(
        args.resolutions if args.resolutions else run.default_resolutions(), "--resolutions"
    )
    seed = run.cfg["seed"] if args.seed is None else args.seed
    data: PairSet | LabelledFaces | SurvFaceFaces
    if kind in ("bin", "pairs"):
        data, description = load_pair_list(kind, args.data, args.root)
    elif kind == "survface":
        data = load_survface(args.data)
        description = data.description
    else:
        data = load_labelled(kind, args.data, args, run.cfg["seed"])
        description = data.description
    degradation = degradation_of(run.cfg)
    options: dict[str, Any] = {"seed": seed, "flip test": args.flip}
    if args.protocol in ("verification", "pairs"):
        options["folds"] = args.folds
    if args.protocol == "openset":
        options.update(rank=args.rank, sweep=args.sweep)
    if kind == "survface":
        options.update(indicator=args.indicator, rule=args.rule)
    options["degradation"] = asdict(degradation)
    report = Report(
        run=str(args.run_dir),
        method=run.method,
        paths=list(run.paths),
        primary=run.primary,
        baseline=BASELINE_PATH,
        protocol=args.protocol,
        data=description,
        resolutions=resolutions,
        options=options,
    )
    log.info(
        "evaluating %s (%s) on %s: protocol %s, resolutions %s",
        args.run_dir,
        run.method,
        description,
        args.protocol,
        resolutions,
    )
    if args.protocol in ("verification", "pairs"):
        if not isinstance(data, PairSet):
            assert isinstance(data, LabelledFaces)  # SOURCES: SurvFace serves no verification
            data = _draw_pairs(data, args.pairs, seed)
        _verification(run, data, report, args, seed)
        return report
    assert not isinstance(data, PairSet)  # SOURCES sends pair lists to verification only
    embedder = FaceEmbedder(
        run, degradation, flip=args.flip, batch_size=args.batch_size, seed=seed
    )
    if args.protocol == "identification":
        _identification(data, embedder, report, args)
    else:
        _openset(data, embedder, report, args, seed)
    return report


def _draw_pairs(faces: LabelledFaces, n_pairs: int, seed: int) -> PairSet:
    """Balanced verification pairs drawn from labelled faces, as training's held-out pairs."""
    from btnet_core.data import verification_pairs

    idx1, idx2, same = verification_pairs(faces.labels, n_pairs, seed)
    used = np.unique(np.concatenate([idx1, idx2]))
    where = np.full(len(faces.labels), -1, dtype=np.int64)
    where[used] = np.arange(len(used))
    return PairSet(faces.images[used], where[idx1], where[idx2], np.asarray(same, dtype=bool))


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``btnet-lab evaluate``: print the report as a table, or as JSON with ``--json``."""
    report = evaluate_run(args)
    if args.json:
        print(json.dumps(asdict(report), indent=1))
    else:
        print(format_table(report))
    return 0
