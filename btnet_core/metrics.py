"""Evaluation metrics of face recognition: numpy in, plain numbers out.

* :func:`verification_accuracy`: the InsightFace 10-fold verification protocol (LFW, CFP-FP,
  AgeDB-30, ...).
* :func:`tar_at_far`: 1:1 true accept rate at false accept rate targets (IJB-style).
* :func:`rank_k`: closed-set identification, CMC at ranks ``k``.
* :func:`tpir_at_fpir`: open-set identification as in QMUL-SurvFace (TPIR at FPIR targets and
  the AUC of the threshold sweep).
* :func:`aggregate_templates` and :func:`template_pair_scores`: IJB-style template features.
* :func:`flip_test_embed` (needs torch) and :func:`l2_normalize`: the embeddings themselves.
* :func:`route_resolution`: which path (trunk 112 or branch 7/14/28) a native-size probe takes.

Every result carries a ``protocol`` id naming the convention behind its numbers (for example
``"verification/insightface-10fold-sqeuclid-flip"``), so numbers computed under different
conventions never end up in one column; ``to_dict()`` gives a flat row for the result store.

Conventions shared by the threshold metrics: a comparison (or a probe) is accepted when its
score is strictly greater than the threshold, and the threshold for a target rate ``r`` over
``N`` non-matching scores is the ``(floor(r * N) + 1)``-th largest of them. The achieved rate is
therefore the largest one not above the target (ties can make it smaller), never more.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from btnet_core.errors import ConfigError, DataError

__all__ = [
    "PROTOCOL_TAR_AT_FAR",
    "PROTOCOL_VERIFICATION",
    "OpenSetResult",
    "RankResult",
    "TarAtFarResult",
    "VerificationResult",
    "aggregate_templates",
    "flip_test_embed",
    "l2_normalize",
    "open_set_protocol",
    "rank_k",
    "rank_protocol",
    "route_resolution",
    "split_pairs",
    "tar_at_far",
    "template_pair_scores",
    "tpir_at_fpir",
    "verification_accuracy",
    "verification_protocol",
]

logger = logging.getLogger(__name__)

#: The thresholds of the InsightFace protocol: squared distances 0, 0.01, ..., 3.99.
VERIFICATION_THRESHOLDS = np.arange(0, 4, 0.01)
PROTOCOL_TAR_AT_FAR = "1to1/tar-at-far-le-target"
#: Open-set sweeps: exact over every distinct score, or the BTNet authors' 1000-point grid.
OPEN_SET_SWEEPS = ("exact", "btnet-linspace1000")
ROUTING_INDICATORS = ("max", "avg", "min")
ROUTING_RULES = ("ceil", "near", "floor")
# Rows of probe-by-gallery score matrices computed at once (bounds memory for large sets).
_CHUNK_ROWS = 4096
# Slack for floor(rate * N) when rate * N is a whole number written in binary (0.29 * 100).
_RATE_EPS = 1e-9


def verification_protocol(n_folds: int = 10, flip_test: bool = True) -> str:
    """The protocol id of :func:`verification_accuracy` for these settings."""
    return f"verification/insightface-{n_folds}fold-sqeuclid-{'flip' if flip_test else 'noflip'}"


#: The protocol id of the standard setting: 10 folds, flip-test embeddings.
PROTOCOL_VERIFICATION = verification_protocol()


def rank_protocol(gallery_mode: str = "prototype") -> str:
    """The protocol id of :func:`rank_k` for this gallery mode."""
    return f"identification/closed-set-cmc-{gallery_mode}-cosine"


def open_set_protocol(rank: int = 20, sweep: str = "exact") -> str:
    """The protocol id of :func:`tpir_at_fpir` for this rank and sweep."""
    return f"identification/open-set-prototype-cosine-tpir{rank}-{sweep}"


# -- helpers ----------------------------------------------------------------------------------


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Scale vectors to unit L2 norm; all-zero vectors stay zero.

    Args:
        x: The vectors (any shape; normalised along ``axis``).
        axis: The axis holding each vector's components.
        eps: Norms below this are treated as this (keeps zero vectors at zero).

    Returns:
        A float array of the same shape (float32 stays float32, other types become float64).
    """
    array = np.asarray(x)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    norm = np.linalg.norm(array, axis=axis, keepdims=True)
    return array / np.maximum(norm, eps)


def split_pairs(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split the embeddings of a verification ``.bin`` (pairs adjacent) into two halves.

    Args:
        embeddings: ``(2P, D)``: pair ``p`` is rows ``2p`` and ``2p + 1``.

    Returns:
        ``(emb1, emb2)``, each ``(P, D)``.
    """
    array = np.asarray(embeddings)
    if array.ndim != 2 or len(array) % 2:
        raise DataError(
            f"split_pairs: expected (2P, D) embeddings with pairs adjacent, got {array.shape}"
        )
    return array[0::2], array[1::2]


def _matrix(x: object, name: str, allow_empty: bool = False) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise DataError(f"{name}: expected a 2-D (N, D) array of embeddings, got {array.shape}")
    if not allow_empty and array.shape[0] == 0:
        raise DataError(f"{name}: is empty")
    if not np.isfinite(array).all():
        raise DataError(f"{name}: holds NaN or infinite values")
    return array


def _ids(x: object, n: int, name: str) -> np.ndarray:
    array = np.asarray(x).reshape(-1)
    if len(array) != n:
        raise DataError(f"{name}: {len(array)} ids for {n} embeddings")
    return array


def _rates(rates: Iterable[float], name: str) -> list[float]:
    values = [float(r) for r in rates]
    if not values or any(not 0 <= r <= 1 for r in values):
        raise DataError(f"{name}: rates must be a non-empty list of numbers in [0, 1]")
    return values


def _kth_largest_threshold(negatives_desc: np.ndarray, rate: float) -> float:
    """Threshold whose strict ``>`` accepts at most ``floor(rate * N)`` of the negatives."""
    allowed = math.floor(rate * len(negatives_desc) + _RATE_EPS)
    if allowed >= len(negatives_desc):
        return -math.inf
    return float(negatives_desc[allowed])


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def _flat(prefix: str, values: dict[Any, float]) -> dict[str, float]:
    return {f"{prefix}={key:g}": float(value) for key, value in values.items()}


# -- verification -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationResult:
    """The result of :func:`verification_accuracy`.

    Attributes:
        accuracy: Mean of the fold accuracies, in [0, 1].
        std: Their standard deviation (population, as InsightFace reports it).
        threshold: Mean of the fold thresholds (squared Euclidean distance).
        fold_accuracies: Accuracy on each held-out fold.
        fold_thresholds: Threshold chosen on the other folds, per fold.
        n_pairs: Number of pairs.
        protocol: The protocol id.
    """

    accuracy: float
    std: float
    threshold: float
    fold_accuracies: tuple[float, ...]
    fold_thresholds: tuple[float, ...]
    n_pairs: int
    protocol: str

    def to_dict(self) -> dict[str, float | int | str]:
        """A flat row: protocol, accuracy, std, threshold, n_pairs."""
        return {
            "protocol": self.protocol,
            "accuracy": self.accuracy,
            "std": self.std,
            "threshold": self.threshold,
            "n_pairs": self.n_pairs,
        }


def _correct_counts(
    dist_same: np.ndarray, dist_diff: np.ndarray, thresholds: np.ndarray
) -> np.ndarray:
    """Correct decisions per threshold ("same" when distance < threshold), from sorted inputs."""
    true_accepts = np.searchsorted(dist_same, thresholds, side="left")
    true_rejects = len(dist_diff) - np.searchsorted(dist_diff, thresholds, side="left")
    return true_accepts + true_rejects


def verification_accuracy(
    emb1: np.ndarray,
    emb2: np.ndarray,
    issame: np.ndarray | Sequence[bool],
    n_folds: int = 10,
    *,
    flip_test: bool = True,
) -> VerificationResult:
    """Verification accuracy under the InsightFace protocol.

    Embeddings are L2-normalised; a pair is called "same" when its squared Euclidean distance is
    strictly below the threshold; thresholds run over 0, 0.01, ..., 3.99. The pairs are cut into
    ``n_folds`` contiguous folds (the first ``P % n_folds`` folds one pair longer, as
    ``sklearn.model_selection.KFold`` without shuffling); for each fold the threshold with the
    best accuracy on the other folds (the smallest on a tie) is applied to it.

    Args:
        emb1: ``(P, D)`` embeddings of the first images.
        emb2: ``(P, D)`` embeddings of the second images.
        issame: ``P`` flags.
        n_folds: Number of folds (10 in the protocol).
        flip_test: Whether the embeddings are flip-test sums; only recorded in the protocol id.

    Returns:
        Mean accuracy, its std and the mean threshold, with the per-fold values.

    Raises:
        DataError: Shapes differ, values are not finite, or there are fewer pairs than folds.
    """
    e1 = _matrix(emb1, "verification_accuracy emb1")
    e2 = _matrix(emb2, "verification_accuracy emb2")
    same = np.asarray(issame, dtype=bool).reshape(-1)
    if e1.shape != e2.shape or len(same) != len(e1):
        raise DataError(
            f"verification_accuracy: emb1 {e1.shape}, emb2 {e2.shape} and {len(same)} flags "
            "do not match"
        )
    n = len(same)
    if not 2 <= n_folds <= n:
        raise DataError(f"verification_accuracy: n_folds={n_folds} needs 2 <= n_folds <= {n}")
    dist = np.sum((l2_normalize(e1) - l2_normalize(e2)) ** 2, axis=1)
    thresholds = VERIFICATION_THRESHOLDS
    all_same = np.sort(dist[same])
    all_diff = np.sort(dist[~same])
    accuracies: list[float] = []
    chosen: list[float] = []
    for fold in np.array_split(np.arange(n), n_folds):
        fold_same = np.sort(dist[fold][same[fold]])
        fold_diff = np.sort(dist[fold][~same[fold]])
        # Counts on the training folds = counts on everything minus counts on this fold.
        train_correct = _correct_counts(all_same, all_diff, thresholds) - _correct_counts(
            fold_same, fold_diff, thresholds
        )
        best = int(np.argmax(train_correct))
        test_correct = _correct_counts(fold_same, fold_diff, thresholds[best : best + 1])[0]
        accuracies.append(float(test_correct) / len(fold))
        chosen.append(float(thresholds[best]))
    result = VerificationResult(
        accuracy=float(np.mean(accuracies)),
        std=float(np.std(accuracies)),
        threshold=float(np.mean(chosen)),
        fold_accuracies=tuple(accuracies),
        fold_thresholds=tuple(chosen),
        n_pairs=n,
        protocol=verification_protocol(n_folds, flip_test),
    )
    logger.debug("verification: %d pairs, accuracy %.4f", n, result.accuracy)
    return result


# -- 1:1 TAR at FAR -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TarAtFarResult:
    """The result of :func:`tar_at_far`.

    Attributes:
        tar: TAR per FAR target.
        thresholds: The score threshold per target (accept when score > threshold).
        achieved_far: The FAR at that threshold (at most the target).
        n_genuine: Number of genuine (same identity) comparisons.
        n_impostor: Number of impostor comparisons.
        protocol: The protocol id.
    """

    tar: dict[float, float]
    thresholds: dict[float, float]
    achieved_far: dict[float, float]
    n_genuine: int
    n_impostor: int
    protocol: str = PROTOCOL_TAR_AT_FAR

    def to_dict(self) -> dict[str, float | int | str]:
        """A flat row: protocol, ``tar@far=<target>`` per target, counts."""
        row: dict[str, float | int | str] = {"protocol": self.protocol}
        row.update(_flat("tar@far", self.tar))
        row.update(n_genuine=self.n_genuine, n_impostor=self.n_impostor)
        return row


def tar_at_far(
    scores: np.ndarray | Sequence[float],
    labels: np.ndarray | Sequence[bool],
    fars: Iterable[float],
) -> TarAtFarResult:
    """True accept rate at false accept rate targets.

    Convention: higher scores mean more similar; a comparison is accepted when its score is
    strictly greater than the threshold; for a target ``f`` over ``N`` impostor scores the
    threshold is the ``(floor(f * N) + 1)``-th largest impostor score, so the achieved FAR is
    the largest one not above ``f``. This equals the highest TPR among the points of
    ``sklearn.metrics.roc_curve`` whose FPR is at most ``f``. A target below ``1 / N`` is
    reported at FAR 0 (a warning says so); InsightFace's IJB script instead takes the ROC point
    nearest the target, which can lie above it.

    Args:
        scores: Similarity of each comparison.
        labels: ``True`` (or 1) for genuine comparisons, ``False`` (0) for impostors.
        fars: FAR targets in [0, 1], e.g. ``(1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)``.

    Returns:
        TAR, threshold and achieved FAR per target.

    Raises:
        DataError: Lengths differ, a score is not finite, or a class is missing.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    genuine_mask = np.asarray(labels).reshape(-1).astype(bool)
    if len(values) != len(genuine_mask):
        raise DataError(f"tar_at_far: {len(values)} scores but {len(genuine_mask)} labels")
    if not np.isfinite(values).all():
        raise DataError("tar_at_far: scores hold NaN or infinite values")
    genuine = values[genuine_mask]
    impostor_desc = np.sort(values[~genuine_mask])[::-1]
    if not len(genuine) or not len(impostor_desc):
        raise DataError(
            f"tar_at_far: needs genuine and impostor scores, got {len(genuine)} genuine and "
            f"{len(impostor_desc)} impostor"
        )
    tar: dict[float, float] = {}
    thresholds: dict[float, float] = {}
    achieved: dict[float, float] = {}
    for far in _rates(fars, "tar_at_far fars"):
        if 0 < far < 1 / len(impostor_desc):
            logger.warning(
                "tar_at_far: FAR %g is below 1/%d impostor scores; reported at FAR 0",
                far,
                len(impostor_desc),
            )
        threshold = _kth_largest_threshold(impostor_desc, far)
        thresholds[far] = threshold
        tar[far] = float(np.mean(genuine > threshold))
        achieved[far] = float(np.mean(impostor_desc > threshold))
    return TarAtFarResult(tar, thresholds, achieved, len(genuine), len(impostor_desc))


# -- identification ---------------------------------------------------------------------------


def _prototypes(gallery: np.ndarray, gallery_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Identity ids (sorted) and their prototypes: mean embedding, L2-normalised."""
    ids, inverse, counts = np.unique(gallery_ids, return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    sums = np.add.reduceat(gallery[order], starts, axis=0)
    return ids, l2_normalize(sums / counts[:, None])


def _identity_scores(
    probes: np.ndarray, gallery: np.ndarray, gallery_ids: np.ndarray, mode: str
) -> Iterable[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield ``(rows, identity ids, cosine scores of those probe rows against each identity)``."""
    if mode == "prototype":
        ids, protos = _prototypes(gallery, gallery_ids)
        for start in range(0, len(probes), _CHUNK_ROWS):
            rows = slice(start, start + _CHUNK_ROWS)
            yield rows, ids, probes[rows] @ protos.T
    else:
        ids, inverse, counts = np.unique(gallery_ids, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        images = l2_normalize(gallery[order])
        for start in range(0, len(probes), _CHUNK_ROWS):
            rows = slice(start, start + _CHUNK_ROWS)
            yield rows, ids, np.maximum.reduceat(probes[rows] @ images.T, starts, axis=1)


def _true_identity_columns(ids: np.ndarray, probe_ids: np.ndarray, name: str) -> np.ndarray:
    if (ids.dtype.kind in "USO") != (probe_ids.dtype.kind in "USO"):
        raise DataError(
            f"{name}: probe ids ({probe_ids.dtype}) and gallery ids ({ids.dtype}) are not of "
            "one kind (numbers or strings)"
        )
    columns = np.searchsorted(ids, probe_ids)
    columns = np.minimum(columns, len(ids) - 1)
    strangers = np.flatnonzero(ids[columns] != probe_ids)
    if len(strangers):
        raise DataError(
            f"{name}: {len(strangers)} probes have identities not in the gallery (e.g. "
            f"{probe_ids[strangers[0]]!r}); a closed-set or mated probe must be enrolled"
        )
    return columns


def _true_scores_and_ranks(
    probes: np.ndarray,
    probe_ids: np.ndarray,
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    mode: str,
    name: str,
    kth: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Score of each probe's own identity, its rank (1 + identities scoring strictly higher),
    the ``kth`` best identity score per probe (when ``kth > 0``) and the identity count."""
    normalized = l2_normalize(probes)
    true_scores = np.empty(len(probes))
    ranks = np.empty(len(probes), dtype=np.int64)
    kth_scores = np.empty(len(probes))
    n_ids = 0
    for rows, ids, scores in _identity_scores(normalized, gallery, gallery_ids, mode):
        n_ids = len(ids)
        columns = _true_identity_columns(ids, probe_ids[rows], name)
        own = scores[np.arange(len(columns)), columns]
        true_scores[rows] = own
        ranks[rows] = 1 + np.sum(scores > own[:, None], axis=1)
        if kth:
            k = min(kth, n_ids)
            kth_scores[rows] = np.partition(scores, n_ids - k, axis=1)[:, n_ids - k]
    return true_scores, ranks, kth_scores, n_ids


@dataclass(frozen=True)
class RankResult:
    """The result of :func:`rank_k`.

    Attributes:
        cmc: Share of probes whose identity is among the ``k`` best, per ``k``.
        n_probes: Number of probes.
        n_identities: Number of gallery identities.
        protocol: The protocol id.
    """

    cmc: dict[int, float]
    n_probes: int
    n_identities: int
    protocol: str

    def to_dict(self) -> dict[str, float | int | str]:
        """A flat row: protocol, ``rank=<k>`` per k, counts."""
        row: dict[str, float | int | str] = {"protocol": self.protocol}
        row.update({f"rank={k}": v for k, v in self.cmc.items()})
        row.update(n_probes=self.n_probes, n_identities=self.n_identities)
        return row


def rank_k(
    gallery: np.ndarray,
    gallery_ids: np.ndarray | Sequence[Any],
    probes: np.ndarray,
    probe_ids: np.ndarray | Sequence[Any],
    ks: Iterable[int] = (1, 5, 10, 20),
    *,
    gallery_mode: str = "prototype",
) -> RankResult:
    """Closed-set identification: the cumulative match characteristic at ranks ``ks``.

    Each probe is compared (cosine) with every gallery identity; its rank is 1 plus the number
    of identities scoring strictly higher than its own (ties counted in its favour). An identity
    is scored through its prototype (the mean of its gallery embeddings, L2-normalised; the
    same as :func:`tpir_at_fpir`) with ``gallery_mode="prototype"``, or by its best-matching
    gallery image with ``gallery_mode="max"``.

    Args:
        gallery: ``(G, D)`` gallery embeddings.
        gallery_ids: ``G`` identity ids (any sortable type).
        probes: ``(Q, D)`` probe embeddings.
        probe_ids: ``Q`` identity ids, each one a gallery identity.
        ks: The ranks to report; ranks above the number of identities give 1.0.
        gallery_mode: ``"prototype"`` or ``"max"``.

    Returns:
        The CMC at each ``k``.

    Raises:
        DataError: The gallery or the probes are empty, shapes differ, or a probe's identity is
            not in the gallery.
        ConfigError: ``gallery_mode`` is unknown or a ``k`` is below 1.
    """
    if gallery_mode not in ("prototype", "max"):
        raise ConfigError(f"rank_k: gallery_mode {gallery_mode!r} is not one of prototype, max")
    ranks_wanted = [int(k) for k in ks]
    if not ranks_wanted or min(ranks_wanted) < 1:
        raise ConfigError("rank_k: ks must be ranks of 1 or more")
    g = _matrix(gallery, "rank_k gallery")
    q = _matrix(probes, "rank_k probes")
    if g.shape[1] != q.shape[1]:
        raise DataError(f"rank_k: gallery dimension {g.shape[1]} != probe dimension {q.shape[1]}")
    g_ids = _ids(gallery_ids, len(g), "rank_k gallery_ids")
    q_ids = _ids(probe_ids, len(q), "rank_k probe_ids")
    _, ranks, _, n_ids = _true_scores_and_ranks(q, q_ids, g, g_ids, gallery_mode, "rank_k")
    cmc = {k: float(np.mean(ranks <= k)) for k in ranks_wanted}
    return RankResult(cmc, len(q), n_ids, rank_protocol(gallery_mode))


@dataclass(frozen=True)
class OpenSetResult:
    """The result of :func:`tpir_at_fpir`.

    Attributes:
        tpir: TPIR (share of mated probes identified within ``rank`` above the threshold) per
            FPIR target.
        thresholds: The score threshold per target (a score passes when strictly greater).
        achieved_fpir: The FPIR at that threshold.
        auc: Area under TPIR against FPIR over the whole threshold sweep, in [0, 1].
        rank: The rank cut-off.
        top_rank_rate: Share of mated probes whose identity is within ``rank`` at all (TPIR at
            FPIR 1, the ceiling of the curve; equals :func:`rank_k` at ``k = rank``).
        n_identities: Number of gallery identities.
        n_mated: Number of mated probes.
        n_unmated: Number of unmated probes.
        protocol: The protocol id.
    """

    tpir: dict[float, float]
    thresholds: dict[float, float]
    achieved_fpir: dict[float, float]
    auc: float
    rank: int
    top_rank_rate: float
    n_identities: int
    n_mated: int
    n_unmated: int
    protocol: str

    def to_dict(self) -> dict[str, float | int | str]:
        """A flat row: protocol, ``tpir@fpir=<target>`` per target, auc, counts."""
        row: dict[str, float | int | str] = {"protocol": self.protocol}
        row.update(_flat("tpir@fpir", self.tpir))
        row.update(
            auc=self.auc,
            top_rank_rate=self.top_rank_rate,
            n_identities=self.n_identities,
            n_mated=self.n_mated,
            n_unmated=self.n_unmated,
        )
        return row


def tpir_at_fpir(
    gallery: np.ndarray,
    gallery_ids: np.ndarray | Sequence[Any],
    mated: np.ndarray,
    mated_ids: np.ndarray | Sequence[Any],
    unmated: np.ndarray,
    fpirs: Iterable[float] = (0.3, 0.2, 0.1, 0.01),
    rank: int = 20,
    *,
    sweep: str = "exact",
) -> OpenSetResult:
    """Open-set identification as in QMUL-SurvFace: TPIR at FPIR targets and the sweep's AUC.

    Each gallery identity is represented by its prototype: the mean of its gallery embeddings
    as given (pass raw embeddings to match the BTNet authors, who average before normalising),
    L2-normalised. Probes are L2-normalised and scored by cosine. A mated probe is a hit at
    threshold ``t`` when its own identity is within the ``rank`` best and its own score is
    above ``t``; an unmated probe is a false positive when its best score is above ``t``.
    TPIR and FPIR are the shares of hits and false positives.

    Sweeps (``sweep``):

    * ``"exact"``: the threshold for a target FPIR ``f`` is the ``(floor(f * U) + 1)``-th
      largest best-score of the ``U`` unmated probes (achieved FPIR at most ``f``); the AUC is
      the trapezoid area under the curve through every distinct operating point, from (0, 0)
      to (1, ``top_rank_rate``).
    * ``"btnet-linspace1000"``: the BTNet authors' evaluation: 1000 evenly spaced thresholds
      from the lowest ``rank``-th best mated score (or the lowest unmated best score if lower)
      to the highest unmated best score; TPIR at ``f`` is read at the grid point whose FPIR is
      nearest to ``f`` (which may lie above ``f``); the AUC is the trapezoid over the grid.
      Use it to compare with the paper's numbers.

    Args:
        gallery: ``(G, D)`` gallery embeddings.
        gallery_ids: ``G`` identity ids.
        mated: ``(M, D)`` mated probe embeddings.
        mated_ids: ``M`` identity ids, each one a gallery identity.
        unmated: ``(U, D)`` unmated probe embeddings.
        fpirs: FPIR targets in [0, 1].
        rank: The rank cut-off (20 in QMUL-SurvFace's TPIR20).
        sweep: ``"exact"`` or ``"btnet-linspace1000"``.

    Returns:
        TPIR, threshold and achieved FPIR per target, the AUC and the counts.

    Raises:
        DataError: The gallery or a probe set is empty, dimensions differ, or a mated probe's
            identity is not in the gallery.
        ConfigError: ``sweep`` is unknown or ``rank`` is below 1.
    """
    if sweep not in OPEN_SET_SWEEPS:
        raise ConfigError(
            f"tpir_at_fpir: sweep {sweep!r} is not one of {', '.join(OPEN_SET_SWEEPS)}"
        )
    if int(rank) < 1:
        raise ConfigError(f"tpir_at_fpir: rank {rank} is below 1")
    rank = int(rank)
    g = _matrix(gallery, "tpir_at_fpir gallery")
    m = _matrix(mated, "tpir_at_fpir mated probes")
    u = _matrix(unmated, "tpir_at_fpir unmated probes")
    if not g.shape[1] == m.shape[1] == u.shape[1]:
        raise DataError(
            f"tpir_at_fpir: dimensions differ: gallery {g.shape[1]}, mated {m.shape[1]}, "
            f"unmated {u.shape[1]}"
        )
    g_ids = _ids(gallery_ids, len(g), "tpir_at_fpir gallery_ids")
    m_ids = _ids(mated_ids, len(m), "tpir_at_fpir mated_ids")
    targets = _rates(fpirs, "tpir_at_fpir fpirs")

    own, ranks, kth, n_ids = _true_scores_and_ranks(
        m, m_ids, g, g_ids, "prototype", "tpir_at_fpir", kth=rank
    )
    hit_scores = np.where(ranks <= rank, own, -np.inf)
    unmated_scores = _identity_scores(l2_normalize(u), g, g_ids, "prototype")
    unmated_best = np.concatenate([scores.max(axis=1) for _, _, scores in unmated_scores])
    hits_sorted = np.sort(hit_scores)
    unmated_sorted = np.sort(unmated_best)

    def passing(sorted_scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
        """Share of scores strictly above each threshold."""
        return (len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, "right")) / len(
            sorted_scores
        )

    tpir: dict[float, float] = {}
    chosen: dict[float, float] = {}
    achieved: dict[float, float] = {}
    if sweep == "exact":
        unmated_desc = unmated_sorted[::-1]
        for target in targets:
            threshold = _kth_largest_threshold(unmated_desc, target)
            chosen[target] = threshold
            tpir[target] = float(passing(hits_sorted, np.array([threshold]))[0])
            achieved[target] = float(passing(unmated_sorted, np.array([threshold]))[0])
        auc = _exact_auc(hit_scores[np.isfinite(hit_scores)], unmated_best, len(m))
    else:
        grid = np.linspace(min(kth.min(), unmated_sorted[0]), unmated_sorted[-1], 1000)
        tpir_grid = passing(hits_sorted, grid)
        fpir_grid = passing(unmated_sorted, grid)
        for target in targets:
            index = int(np.argmin(np.abs(fpir_grid - target)))
            chosen[target] = float(grid[index])
            tpir[target] = float(tpir_grid[index])
            achieved[target] = float(fpir_grid[index])
        auc = 0.0 - _trapezoid(tpir_grid, fpir_grid)  # FPIR falls along the grid
    result = OpenSetResult(
        tpir=tpir,
        thresholds=chosen,
        achieved_fpir=achieved,
        auc=float(auc),
        rank=rank,
        top_rank_rate=float(np.mean(ranks <= rank)),
        n_identities=n_ids,
        n_mated=len(m),
        n_unmated=len(u),
        protocol=open_set_protocol(rank, sweep),
    )
    logger.debug("open-set identification: %s", result.to_dict())
    return result


def _exact_auc(hits: np.ndarray, unmated_best: np.ndarray, n_mated: int) -> float:
    """Area under (FPIR, TPIR) through every distinct threshold, from (0, 0) to (1, ceiling)."""
    scores = np.concatenate([hits, unmated_best])
    is_hit = np.concatenate([np.ones(len(hits), bool), np.zeros(len(unmated_best), bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_hit = scores[order], is_hit[order]
    # One operating point per distinct score: the last position holding that score.
    ends = np.r_[np.flatnonzero(np.diff(scores) != 0), len(scores) - 1]
    tpir = np.r_[0.0, np.cumsum(is_hit)[ends] / n_mated]
    fpir = np.r_[0.0, np.cumsum(~is_hit)[ends] / len(unmated_best)]
    return _trapezoid(tpir, fpir)


# -- IJB-style templates ----------------------------------------------------------------------


def aggregate_templates(
    features: np.ndarray,
    template_ids: np.ndarray | Sequence[Any],
    media_ids: np.ndarray | Sequence[Any],
    *,
    normalize_images: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Template features as in IJB-B/C: average within each media, sum over media, L2-norm.

    Args:
        features: ``(N, D)`` per-image features (e.g. flip-test sums).
        template_ids: ``N`` template ids.
        media_ids: ``N`` media ids (images of one video share one; each still image has its own).
        normalize_images: L2-normalise each image's feature first (the BTNet protocol does).

    Returns:
        ``(ids, template_features)``: the sorted unique template ids and ``(T, D)``
        L2-normalised features in that order.

    Raises:
        DataError: The features are empty or the id lists have the wrong length.
    """
    feats = _matrix(features, "aggregate_templates features")
    if normalize_images:
        feats = l2_normalize(feats)
    t_ids = _ids(template_ids, len(feats), "template_ids")
    templates, t_code = np.unique(t_ids, return_inverse=True)
    _, m_code = np.unique(_ids(media_ids, len(feats), "media_ids"), return_inverse=True)
    group = t_code.astype(np.int64) * (int(m_code.max()) + 1) + m_code
    groups, group_code, group_size = np.unique(group, return_inverse=True, return_counts=True)
    order = np.argsort(group_code, kind="stable")
    starts = np.r_[0, np.cumsum(group_size)[:-1]]
    media_means = np.add.reduceat(feats[order], starts, axis=0) / group_size[:, None]
    group_template = groups // (int(m_code.max()) + 1)  # sorted, since groups are
    template_starts = np.r_[0, np.flatnonzero(np.diff(group_template)) + 1]
    sums = np.add.reduceat(media_means, template_starts, axis=0)
    return templates, l2_normalize(sums)


def template_pair_scores(
    template_ids: np.ndarray,
    template_features: np.ndarray,
    first: np.ndarray | Sequence[Any],
    second: np.ndarray | Sequence[Any],
) -> np.ndarray:
    """Cosine scores of template pairs (e.g. IJB-C's 1:1 match list) for :func:`tar_at_far`.

    Args:
        template_ids: Sorted template ids, as returned by :func:`aggregate_templates`.
        template_features: Their L2-normalised features.
        first: The first template of each pair.
        second: The second template of each pair.

    Returns:
        One cosine score per pair.

    Raises:
        DataError: A pair names a template that has no feature.
    """
    ids = np.asarray(template_ids)
    feats = np.asarray(template_features, dtype=np.float64)
    rows = []
    for name, wanted in (("first", first), ("second", second)):
        keys = np.asarray(wanted).reshape(-1)
        index = np.minimum(np.searchsorted(ids, keys), len(ids) - 1)
        unknown = np.flatnonzero(ids[index] != keys)
        if len(unknown):
            raise DataError(
                f"template_pair_scores: {len(unknown)} {name} templates have no feature (e.g. "
                f"{keys[unknown[0]]!r})"
            )
        rows.append(index)
    if len(rows[0]) != len(rows[1]):
        raise DataError(f"template_pair_scores: {len(rows[0])} first but {len(rows[1])} second")
    return np.einsum("ij,ij->i", feats[rows[0]], feats[rows[1]])


# -- embeddings -------------------------------------------------------------------------------


def flip_test_embed(
    embed_fn: Callable[[Any], Any],
    images: Any,
    *,
    flip_embed_fn: Callable[[Any], Any] | None = None,
    normalize: bool = True,
) -> np.ndarray:
    """Flip-test embeddings: ``embed_fn(images) + flip_embed_fn(flip(images))``.

    Runs under ``torch.no_grad()``. With ``flip_embed_fn`` the flipped copy can take another
    path, as in BTNet's IJB protocol (trunk on the image, branch on its mirror image).

    Args:
        embed_fn: Maps an ``(N, C, H, W)`` float tensor to ``(N, D)`` embeddings.
        images: ``(N, C, H, W)`` float tensor (or numpy array, converted).
        flip_embed_fn: Embeds the horizontally flipped batch; default ``embed_fn``.
        normalize: L2-normalise the sum.

    Returns:
        ``(N, D)`` float32 numpy array.

    Raises:
        DataError: ``images`` is not a 4-D batch.
    """
    import torch

    batch = images if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if batch.ndim != 4:
        raise DataError(
            f"flip_test_embed: expected an (N, C, H, W) batch, got {tuple(batch.shape)}"
        )
    second = flip_embed_fn if flip_embed_fn is not None else embed_fn
    with torch.no_grad():
        total = embed_fn(batch) + second(torch.flip(batch, dims=(3,)))
    out = total.detach().float().cpu().numpy()
    return l2_normalize(out) if normalize else out


def route_resolution(
    width: int,
    height: int,
    indicator: str = "max",
    rule: str = "ceil",
    resolutions: Sequence[int] = (7, 14, 28, 112),
) -> int:
    """The input resolution (branch, or 112 for the trunk) a native-size probe is routed to.

    The indicator reduces the probe's size to one number ``s``: ``max(w, h)``, ``min(w, h)`` or
    ``(w + h) // 2`` (``avg``, floored as in the BTNet authors' code). The rule maps ``s`` to a
    resolution ``r``: ``ceil``, the smallest ``r >= s`` (the largest if none); ``floor``, the
    largest ``r <= s`` (the smallest if none); ``near``, the nearest ``r`` (the smaller on a
    tie). With the default resolutions these give BTNet's table:

    ======  ==========  =====  =====  ==========
    rule    7           14     28     112
    ======  ==========  =====  =====  ==========
    ceil    up to 7     8-14   15-28  29 and up
    near    up to 10    11-21  22-70  71 and up
    floor   up to 13    14-27  28-111 112 and up
    ======  ==========  =====  =====  ==========

    Args:
        width: Probe width in pixels.
        height: Probe height in pixels.
        indicator: ``"max"``, ``"avg"`` or ``"min"``.
        rule: ``"ceil"``, ``"near"`` or ``"floor"``.
        resolutions: The available input resolutions.

    Returns:
        One of ``resolutions``.

    Raises:
        ConfigError: Unknown indicator or rule, or no resolutions.
        DataError: Width or height is not a positive integer.
    """
    if indicator not in ROUTING_INDICATORS:
        raise ConfigError(
            f"route_resolution: indicator {indicator!r} is not one of "
            f"{', '.join(ROUTING_INDICATORS)}"
        )
    if rule not in ROUTING_RULES:
        raise ConfigError(
            f"route_resolution: rule {rule!r} is not one of {', '.join(ROUTING_RULES)}"
        )
    choices = sorted({int(r) for r in resolutions})
    if not choices:
        raise ConfigError("route_resolution: resolutions is empty")
    if int(width) != width or int(height) != height or width < 1 or height < 1:
        raise DataError(f"route_resolution: size {width}x{height} is not positive whole pixels")
    w, h = int(width), int(height)
    size = max(w, h) if indicator == "max" else min(w, h) if indicator == "min" else (w + h) // 2
    if rule == "ceil":
        return next((r for r in choices if r >= size), choices[-1])
    if rule == "floor":
        return next((r for r in reversed(choices) if r <= size), choices[0])
    return min(choices, key=lambda r: (abs(r - size), r))
