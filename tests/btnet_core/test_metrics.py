"""Tests of btnet_core.metrics: hand-computed cases, independent references, and ORL faces."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from btnet_core.errors import ConfigError, DataError
from btnet_core.metrics import (
    aggregate_templates,
    flip_test_embed,
    l2_normalize,
    rank_k,
    route_resolution,
    split_pairs,
    tar_at_far,
    template_pair_scores,
    tpir_at_fpir,
    verification_accuracy,
)

ORL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "orl"


def unit(angle_degrees: float) -> np.ndarray:
    """A unit vector in the plane."""
    a = math.radians(angle_degrees)
    return np.array([math.cos(a), math.sin(a)])


def pair_at_squared_distance(d: float) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors whose squared Euclidean distance is d (2 - 2 cos = d)."""
    return unit(0.0), unit(math.degrees(math.acos(1 - d / 2)))


# -- l2_normalize, split_pairs -----------------------------------------------------------------


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows() -> None:
    """Rows get norm 1; an all-zero row stays zero instead of becoming NaN."""
    out = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_split_pairs_takes_adjacent_rows() -> None:
    """A .bin's embeddings hold pairs in adjacent rows: 0-1, 2-3, ..."""
    first, second = split_pairs(np.arange(8).reshape(4, 2))
    np.testing.assert_array_equal(first, [[0, 1], [4, 5]])
    np.testing.assert_array_equal(second, [[2, 3], [6, 7]])


# -- verification_accuracy -------------------------------------------------------------------


def test_verification_accuracy_perfect_separation_hand_computed() -> None:
    """Same pairs at distance 0.5, different at 2.0: accuracy 1 and the first threshold above
    0.5 of the 0.01 grid (0.51) on every fold."""
    emb1, emb2, same = [], [], []
    for i in range(20):
        a, b = pair_at_squared_distance(0.5 if i % 2 == 0 else 2.0)
        emb1.append(a)
        emb2.append(b)
        same.append(i % 2 == 0)
    result = verification_accuracy(np.array(emb1), np.array(emb2), same, n_folds=10)
    assert result.accuracy == 1.0
    assert result.std == 0.0
    assert result.threshold == pytest.approx(0.51)


def test_verification_accuracy_hand_computed_with_one_error() -> None:
    """Two folds of ten pairs; fold A holds one same pair at distance 3.0. Training on B gives
    0.51, which misses that pair (A: 9/10); training on A still prefers 0.51 (9/10 against 5/10
    for a threshold above 3), which is perfect on B. Mean 0.95, std 0.05."""
    emb1, emb2, same = [], [], []
    for i in range(20):
        is_same = i % 2 == 0
        d = 3.0 if i == 0 else (0.5 if is_same else 2.0)
        a, b = pair_at_squared_distance(d)
        emb1.append(a)
        emb2.append(b)
        same.append(is_same)
    result = verification_accuracy(np.array(emb1), np.array(emb2), same, n_folds=2)
    assert result.fold_accuracies == pytest.approx((0.9, 1.0))
    assert result.accuracy == pytest.approx(0.95)
    assert result.std == pytest.approx(0.05)
    assert result.threshold == pytest.approx(0.51)


def reference_verification(
    emb1: np.ndarray, emb2: np.ndarray, same: np.ndarray, n_folds: int
) -> tuple[float, float, float]:
    """The protocol written the plain way: sklearn KFold, a loop over the 400 thresholds."""
    from sklearn.model_selection import KFold

    e1 = emb1 / np.linalg.norm(emb1, axis=1, keepdims=True)
    e2 = emb2 / np.linalg.norm(emb2, axis=1, keepdims=True)
    dist = np.sum(np.square(e1 - e2), axis=1)
    thresholds = np.arange(0, 4, 0.01)
    accuracies, chosen = [], []
    for train, test in KFold(n_splits=n_folds, shuffle=False).split(dist):
        train_acc = [np.mean((dist[train] < t) == same[train]) for t in thresholds]
        best = thresholds[int(np.argmax(train_acc))]
        accuracies.append(np.mean((dist[test] < best) == same[test]))
        chosen.append(best)
    return float(np.mean(accuracies)), float(np.std(accuracies)), float(np.mean(chosen))


def test_verification_accuracy_matches_sklearn_kfold_reference() -> None:
    """On noisy random pairs (303 pairs: uneven folds) the result equals the plain reference."""
    rng = np.random.default_rng(0)
    n, dim = 303, 16
    base = rng.normal(size=(n, dim))
    same = rng.random(n) < 0.5
    other = np.where(
        same[:, None], base + rng.normal(scale=0.9, size=(n, dim)), rng.normal(size=(n, dim))
    )
    result = verification_accuracy(base, other, same, n_folds=10)
    accuracy, std, threshold = reference_verification(base, other, same, 10)
    assert 0.6 < accuracy < 1.0  # the case is neither trivial nor chance
    assert result.accuracy == pytest.approx(accuracy, abs=1e-12)
    assert result.std == pytest.approx(std, abs=1e-12)
    assert result.threshold == pytest.approx(threshold, abs=1e-12)


def test_verification_protocol_id_names_folds_and_flip() -> None:
    """The protocol id records the fold count and whether embeddings are flip-test sums."""
    a = np.eye(4)[:, :3].repeat(5, axis=0)[:20]
    same = np.arange(20) % 2 == 0
    assert (
        verification_accuracy(a, a, same).protocol
        == "verification/insightface-10fold-sqeuclid-flip"
    )
    result = verification_accuracy(a, a, same, n_folds=5, flip_test=False)
    assert result.protocol == "verification/insightface-5fold-sqeuclid-noflip"
    assert result.to_dict()["protocol"] == result.protocol


def test_verification_accuracy_rejects_mismatched_inputs() -> None:
    """Different pair counts are one DataError, not a numpy broadcasting error."""
    with pytest.raises(DataError, match="do not match"):
        verification_accuracy(np.ones((10, 3)), np.ones((9, 3)), [True] * 10)


# -- tar_at_far ---------------------------------------------------------------------------------


def test_tar_at_far_hand_computed() -> None:
    """Genuine 0.9 0.8 0.7 0.4; impostor 0.85 0.6 0.3 0.2 0.1. FAR 0.2 allows one impostor:
    threshold = 2nd largest impostor 0.6, TAR 3/4. FAR 0: threshold 0.85, TAR 1/4. FAR 1:
    everything passes."""
    scores = [0.9, 0.8, 0.7, 0.4, 0.85, 0.6, 0.3, 0.2, 0.1]
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0]
    result = tar_at_far(scores, labels, [0.2, 0.0, 1.0])
    assert result.tar == {0.2: 0.75, 0.0: 0.25, 1.0: 1.0}
    assert result.thresholds[0.2] == 0.6
    assert result.achieved_far == {0.2: 0.2, 0.0: 0.0, 1.0: 1.0}
    assert result.to_dict()["tar@far=0.2"] == 0.75


def test_tar_at_far_matches_sklearn_roc_curve() -> None:
    """With ties (scores rounded to 2 decimals), TAR@FAR equals the best TPR of sklearn's ROC
    points whose FPR is at most the target."""
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(1)
    labels = rng.random(2000) < 0.3
    scores = np.round(rng.normal(loc=labels * 1.2, scale=1.0), 2)
    fars = [0.0, 1e-3, 0.01, 0.05, 0.1, 0.333, 0.5, 1.0]
    result = tar_at_far(scores, labels, fars)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    for far in fars:
        assert result.tar[far] == pytest.approx(tpr[fpr <= far + 1e-12].max(), abs=1e-12)
        assert result.achieved_far[far] <= far


def test_tar_at_far_needs_both_classes() -> None:
    """Without impostor scores there is no FAR: one DataError."""
    with pytest.raises(DataError, match="impostor"):
        tar_at_far([0.1, 0.2], [1, 1], [0.1])


# -- rank_k -------------------------------------------------------------------------------------

GALLERY = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
GALLERY_IDS = np.array(["A", "A", "B", "C"])
# Probe 1 (A) matches A best; probe 2 (B) scores A 0.6, B 0.8; probe 3 (A) scores B 0.8,
# C 0.6, A -0.6: rank 3.
MATED = np.array([[1.0, 0.0], [0.6, 0.8], [-0.6, 0.8]])
MATED_IDS = np.array(["A", "B", "A"])
# Best scores 0.8 (A) and 0.0 (A and C).
UNMATED = np.array([[0.8, 0.6], [0.0, -1.0]])


def test_rank_k_hand_computed() -> None:
    """Ranks 1, 1, 3: CMC 2/3 at ranks 1 and 2, 1 from rank 3 on."""
    result = rank_k(GALLERY, GALLERY_IDS, MATED, MATED_IDS, ks=(1, 2, 3, 20))
    assert result.cmc == pytest.approx({1: 2 / 3, 2: 2 / 3, 3: 1.0, 20: 1.0})
    assert result.n_identities == 3
    assert result.protocol == "identification/closed-set-cmc-prototype-cosine"


def test_rank_k_max_mode_scores_identities_by_their_best_image() -> None:
    """Identity A has images (1,0) and (0,1): its prototype (0.71, 0.71) loses to B (0.6, 0.8)
    for a probe at (0,1), but its best image wins."""
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    ids = np.array([1, 1, 2])
    probe = np.array([[0.0, 1.0]])
    assert rank_k(gallery, ids, probe, [1], ks=(1,)).cmc[1] == 0.0
    assert rank_k(gallery, ids, probe, [1], ks=(1,), gallery_mode="max").cmc[1] == 1.0


def test_rank_k_refuses_a_probe_identity_outside_the_gallery() -> None:
    """Closed-set identification needs every probe enrolled: one DataError naming the id."""
    with pytest.raises(DataError, match="not in the gallery"):
        rank_k(GALLERY, GALLERY_IDS, MATED, ["A", "B", "Z"])


def test_rank_k_refuses_an_empty_gallery() -> None:
    """An empty gallery is one DataError, not an index error deep in numpy."""
    with pytest.raises(DataError, match="gallery: is empty"):
        rank_k(np.zeros((0, 2)), [], MATED, MATED_IDS)


# -- tpir_at_fpir ---------------------------------------------------------------------------------


def test_tpir_at_fpir_hand_computed_rank_1() -> None:
    """Rank 1: hits 1.0 and 0.8 (probe 3 misses); unmated best 0.8 and 0.0. FPIR 0.5: threshold
    0.0, TPIR 2/3. FPIR 0: threshold 0.8, TPIR 1/3 (0.8 does not pass 0.8). Curve points (0,0),
    (0,1/3), (1/2,2/3), (1,2/3): AUC 0.25 + 1/3."""
    result = tpir_at_fpir(
        GALLERY, GALLERY_IDS, MATED, MATED_IDS, UNMATED, fpirs=(0.5, 0.0), rank=1
    )
    assert result.tpir == pytest.approx({0.5: 2 / 3, 0.0: 1 / 3})
    assert result.thresholds == pytest.approx({0.5: 0.0, 0.0: 0.8})
    assert result.achieved_fpir == {0.5: 0.5, 0.0: 0.0}
    assert result.auc == pytest.approx(0.25 + 1 / 3)
    assert result.top_rank_rate == pytest.approx(2 / 3)
    assert result.protocol == "identification/open-set-prototype-cosine-tpir1-exact"


def test_tpir_at_fpir_rank_3_counts_the_third_ranked_hit_only_at_fpir_1() -> None:
    """Rank 3 makes probe 3 a hit with score -0.6, below every unmated score: it only counts
    once all unmated probes pass (FPIR 1)."""
    result = tpir_at_fpir(
        GALLERY, GALLERY_IDS, MATED, MATED_IDS, UNMATED, fpirs=(1.0, 0.5), rank=3
    )
    assert result.tpir == pytest.approx({1.0: 1.0, 0.5: 2 / 3})
    assert result.top_rank_rate == 1.0
    assert result.auc == pytest.approx(0.25 + 1 / 3)


def brute_force_open_set(
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    mated: np.ndarray,
    mated_ids: np.ndarray,
    unmated: np.ndarray,
    rank: int,
    fpirs: list[float],
) -> tuple[dict[float, float], float]:
    """TPIR@FPIR and AUC by trying every threshold, with prototypes built in a Python loop."""
    ids = sorted(set(gallery_ids.tolist()))
    protos = []
    for identity in ids:
        mean = gallery[gallery_ids == identity].mean(axis=0)
        protos.append(mean / np.linalg.norm(mean))
    protos_arr = np.array(protos)
    m = mated / np.linalg.norm(mated, axis=1, keepdims=True)
    u = unmated / np.linalg.norm(unmated, axis=1, keepdims=True)
    hits = []
    for row, identity in zip(m @ protos_arr.T, mated_ids, strict=True):
        own = row[ids.index(identity)]
        position = 1 + int(np.sum(row > own))
        hits.append(own if position <= rank else -np.inf)
    hits_arr = np.array(hits)
    best_unmated = (u @ protos_arr.T).max(axis=1)
    candidates = np.concatenate([[np.inf, -np.inf], hits_arr[np.isfinite(hits_arr)], best_unmated])
    candidates = np.unique(candidates)[::-1]  # from +inf down to -inf
    points = [(np.mean(best_unmated > t), np.mean(hits_arr > t)) for t in candidates]
    tpir = {f: max(tp for fp, tp in points if fp <= f + 1e-12) for f in fpirs}
    pairs = zip(points[:-1], points[1:], strict=True)
    auc = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in pairs)
    return tpir, auc


def test_tpir_at_fpir_exact_matches_brute_force() -> None:
    """On random clustered data (30 identities, 3 gallery images each) TPIR at every target and
    the AUC equal a brute-force sweep over all thresholds."""
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(40, 12))
    gallery_ids = np.repeat(np.arange(30), 3)
    gallery = centres[gallery_ids] + rng.normal(scale=0.8, size=(90, 12))
    mated_ids = rng.integers(0, 30, size=150)
    mated = centres[mated_ids] + rng.normal(scale=0.8, size=(150, 12))
    unmated = centres[rng.integers(30, 40, size=97)] + rng.normal(scale=0.8, size=(97, 12))
    fpirs = [0.3, 0.2, 0.1, 0.01, 0.0, 1.0]
    for rank in (1, 5):
        result = tpir_at_fpir(gallery, gallery_ids, mated, mated_ids, unmated, fpirs, rank=rank)
        tpir, auc = brute_force_open_set(
            gallery, gallery_ids, mated, mated_ids, unmated, rank, fpirs
        )
        assert result.tpir == pytest.approx(tpir, abs=1e-12)
        assert result.auc == pytest.approx(auc, abs=1e-12)


def test_tpir_at_fpir_btnet_sweep_follows_its_1000_point_grid() -> None:
    """The authors' sweep: 1000 thresholds from the lowest rank-th best mated score to the best
    unmated score, TPIR read at the grid FPIR nearest the target, AUC as the grid trapezoid."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(25, 8))
    gallery_ids = np.repeat(np.arange(20), 2)
    gallery = centres[gallery_ids] + rng.normal(scale=0.7, size=(40, 8))
    mated_ids = rng.integers(0, 20, size=60)
    mated = centres[mated_ids] + rng.normal(scale=0.7, size=(60, 8))
    unmated = centres[rng.integers(20, 25, size=50)] + rng.normal(scale=0.7, size=(50, 8))
    result = tpir_at_fpir(
        gallery,
        gallery_ids,
        mated,
        mated_ids,
        unmated,
        (0.3, 0.1),
        rank=5,
        sweep="btnet-linspace1000",
    )

    protos = np.array([gallery[gallery_ids == i].mean(axis=0) for i in range(20)])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    k_scores = (mated / np.linalg.norm(mated, axis=1, keepdims=True)) @ protos.T
    u_best = ((unmated / np.linalg.norm(unmated, axis=1, keepdims=True)) @ protos.T).max(axis=1)
    top = np.argsort(-k_scores, axis=1)[:, :5]
    top_values = np.take_along_axis(k_scores, top, axis=1)
    correct = top == mated_ids[:, None]
    grid = np.linspace(min(top_values.min(), u_best.min()), u_best.max(), 1000)
    tpir = np.array([(correct & (top_values > t)).sum() / 60 for t in grid])
    fpir = np.array([(u_best > t).mean() for t in grid])
    for target in (0.3, 0.1):
        assert result.tpir[target] == pytest.approx(tpir[np.argmin(np.abs(fpir - target))])
    assert result.auc == pytest.approx(-np.trapezoid(tpir, fpir))
    assert result.protocol.endswith("tpir5-btnet-linspace1000")


def test_tpir_at_fpir_refuses_empty_unmated_probes() -> None:
    """FPIR needs unmated probes: an empty set is one DataError."""
    with pytest.raises(DataError, match="unmated probes: is empty"):
        tpir_at_fpir(GALLERY, GALLERY_IDS, MATED, MATED_IDS, np.zeros((0, 2)))


def test_tpir_at_fpir_refuses_an_unknown_sweep() -> None:
    """A misspelt sweep is a ConfigError listing the allowed ones."""
    with pytest.raises(ConfigError, match="exact, btnet-linspace1000"):
        tpir_at_fpir(GALLERY, GALLERY_IDS, MATED, MATED_IDS, UNMATED, sweep="linear")


# -- templates ----------------------------------------------------------------------------------


def test_aggregate_templates_averages_media_then_sums_and_normalises() -> None:
    """Template 1: media 10 = (1,0), (3,0) and media 11 = (0,1); template 2: (0,-1). Without
    per-image normalisation media 10 averages to (2,0), so template 1 is (2,1)/sqrt(5); with it,
    media 10 averages to (1,0) and template 1 is (1,1)/sqrt(2)."""
    feats = np.array([[1.0, 0.0], [0.0, -1.0], [3.0, 0.0], [0.0, 1.0]])
    templates = [1, 2, 1, 1]
    media = [10, 12, 10, 11]
    ids, raw = aggregate_templates(feats, templates, media, normalize_images=False)
    np.testing.assert_array_equal(ids, [1, 2])
    np.testing.assert_allclose(raw, [[2 / math.sqrt(5), 1 / math.sqrt(5)], [0.0, -1.0]])
    _, normed = aggregate_templates(feats, templates, media)
    np.testing.assert_allclose(normed[0], [1 / math.sqrt(2), 1 / math.sqrt(2)])


def test_template_pair_scores_are_cosines_of_named_templates() -> None:
    """Pairs name templates by id; the score is the cosine of their features."""
    ids = np.array([5, 7, 9])
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    np.testing.assert_allclose(template_pair_scores(ids, feats, [5, 9], [9, 7]), [0.6, 0.8])
    with pytest.raises(DataError, match="no feature"):
        template_pair_scores(ids, feats, [5], [6])


# -- flip test ---------------------------------------------------------------------------------


def test_flip_test_embed_adds_the_embedding_of_the_mirror_image() -> None:
    """With an embedding that reads the first pixel row, the flip-test sum is that row plus the
    row reversed; a separate flip path is applied to the mirrored batch only."""
    import torch

    images = torch.arange(2 * 1 * 2 * 3, dtype=torch.float32).reshape(2, 1, 2, 3)
    rows = images[:, 0, 0, :].numpy()

    def first_row(x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :]

    out = flip_test_embed(first_row, images, normalize=False)
    np.testing.assert_allclose(out, rows + rows[:, ::-1])
    doubled = flip_test_embed(first_row, images, flip_embed_fn=lambda x: 2 * first_row(x))
    np.testing.assert_allclose(doubled, l2_normalize(rows + 2 * rows[:, ::-1]), rtol=1e-6)


# -- routing ----------------------------------------------------------------------------------

# BTNet's routing table, written out as inclusive intervals of the indicator.
ROUTING_TABLE = {
    "ceil": [(1, 7, 7), (8, 14, 14), (15, 28, 28), (29, 400, 112)],
    "near": [(1, 10, 7), (11, 21, 14), (22, 70, 28), (71, 400, 112)],
    "floor": [(1, 13, 7), (14, 27, 14), (28, 111, 28), (112, 400, 112)],
}


@pytest.mark.parametrize("rule", ["ceil", "near", "floor"])
def test_route_resolution_follows_the_btnet_table(rule: str) -> None:
    """Every size from 1 to 400 pixels lands on the resolution of BTNet's table."""
    for low, high, resolution in ROUTING_TABLE[rule]:
        for size in range(low, high + 1):
            assert route_resolution(size, size, "max", rule) == resolution, (rule, size)


def test_route_resolution_indicators_reduce_width_and_height() -> None:
    """max, min and the floored average of a 10x20 probe are 20, 10 and 15 (ceil: 28, 14, 28);
    a 7x8 probe averages to 7 (floored), so ceil keeps it on the 7 branch."""
    assert route_resolution(10, 20, "max") == 28
    assert route_resolution(10, 20, "min") == 14
    assert route_resolution(10, 20, "avg") == 28
    assert route_resolution(7, 8, "avg") == 7


def test_route_resolution_refuses_an_unknown_rule() -> None:
    """A misspelt rule is a ConfigError listing the allowed ones."""
    with pytest.raises(ConfigError, match="ceil, near, floor"):
        route_resolution(20, 20, rule="round")


# -- ORL: identification on real faces -----------------------------------------------------------


@pytest.fixture(scope="module")
def orl_embeddings() -> dict[tuple[int, int], np.ndarray]:
    """A deterministic embedding of every ORL face: 4x4 block-mean pixels (28x23), minus the
    mean face of identities 34-40, which the tests below never enrol or probe."""
    if not ORL.is_dir():
        pytest.skip(f"ORL faces not found at {ORL}")
    pixels = {}
    for person in range(1, 41):
        for shot in range(1, 11):
            image = np.asarray(Image.open(ORL / f"s{person:02d}" / f"{shot:02d}.png"), float)
            pixels[person, shot] = image.reshape(28, 4, 23, 4).mean(axis=(1, 3)).reshape(-1)
    mean = np.mean([pixels[p, s] for p in range(34, 41) for s in range(1, 11)], axis=0)
    return {key: value - mean for key, value in pixels.items()}


def orl_split(
    emb: dict[tuple[int, int], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Identities 1-25 enrolled with shots 1-5 and probed with shots 6-10; identities 26-33
    are the unmated probes (all shots)."""
    gallery_keys = [(p, s) for p in range(1, 26) for s in range(1, 6)]
    probe_keys = [(p, s) for p in range(1, 26) for s in range(6, 11)]
    unmated_keys = [(p, s) for p in range(26, 34) for s in range(1, 11)]
    return (
        np.stack([emb[k] for k in gallery_keys]),
        np.array([k[0] for k in gallery_keys]),
        np.stack([emb[k] for k in probe_keys]),
        np.array([k[0] for k in probe_keys]),
        np.stack([emb[k] for k in unmated_keys]),
    )


def test_orl_closed_set_rank_is_well_above_chance(orl_embeddings: dict) -> None:
    """Pixel embeddings identify ORL faces far above chance (1/25) at rank 1, and the CMC never
    falls with k."""
    gallery, gallery_ids, probes, probe_ids, _ = orl_split(orl_embeddings)
    cmc = rank_k(gallery, gallery_ids, probes, probe_ids, ks=(1, 5, 10, 20)).cmc
    assert cmc[1] > 0.8
    assert cmc[1] <= cmc[5] <= cmc[10] <= cmc[20] == 1.0


def test_orl_open_set_is_consistent_with_closed_set(orl_embeddings: dict) -> None:
    """Open-set TPIR at rank r is capped by the closed-set CMC at r (its value at FPIR 1), falls
    with the FPIR target, stays well above zero at FPIR 0.1, and the btnet sweep agrees with the
    exact one to within its grid."""
    gallery, gallery_ids, probes, probe_ids, unmated = orl_split(orl_embeddings)
    cmc = rank_k(gallery, gallery_ids, probes, probe_ids, ks=(1, 20)).cmc
    for rank in (1, 20):
        result = tpir_at_fpir(
            gallery, gallery_ids, probes, probe_ids, unmated, (1.0, 0.3, 0.2, 0.1, 0.01), rank
        )
        assert result.top_rank_rate == pytest.approx(cmc[rank])
        assert result.tpir[1.0] == pytest.approx(cmc[rank])
        values = [result.tpir[f] for f in (1.0, 0.3, 0.2, 0.1, 0.01)]
        assert values == sorted(values, reverse=True)
        assert result.tpir[0.1] > 0.5
        assert 0.5 < result.auc <= result.top_rank_rate
    exact = tpir_at_fpir(gallery, gallery_ids, probes, probe_ids, unmated)
    grid = tpir_at_fpir(
        gallery, gallery_ids, probes, probe_ids, unmated, sweep="btnet-linspace1000"
    )
    assert grid.auc == pytest.approx(exact.auc, abs=0.01)
    assert grid.tpir[0.1] == pytest.approx(exact.tpir[0.1], abs=0.05)


def test_orl_verification_is_well_above_chance(orl_embeddings: dict) -> None:
    """Verification on 400 ORL pairs (same: shots 1 and 2..6 of one person; different: shot 1
    of two people) is far above the 50% of guessing."""
    first, second, same = [], [], []
    for person in range(1, 41):
        for shot in range(2, 7):
            first.append(orl_embeddings[person, 1])
            second.append(orl_embeddings[person, shot])
            same.append(True)
            other = (person + shot - 1) % 40 + 1
            first.append(orl_embeddings[person, shot])
            second.append(orl_embeddings[other, 1])
            same.append(False)
    result = verification_accuracy(np.array(first), np.array(second), same)
    assert result.accuracy > 0.8
    assert 0 < result.threshold < 4
