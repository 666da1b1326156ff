"""Property-based tests (hypothesis) of the study parser and of the evaluation metrics.

Study parser: any valid space of choices parses and expands into (product of the choice counts)
x (seeds) trials with distinct ids; random junk (text, keys, values) never escapes as anything
but a one-line BTNetError naming the file. Metrics: verification accuracy lies in [0, 1] and
does not change with the embeddings' scale or with the order of a pair; TAR never falls as the
FAR target rises; the CMC never falls as the rank rises; TPIR never rises as the FPIR target
falls. max_examples stays small so the whole module runs in seconds.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablations.study import parse_study, plan_trials
from btnet_core.errors import BTNetError
from btnet_core.metrics import rank_k, tar_at_far, tpir_at_fpir, verification_accuracy

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HEADER = {"name": "p", "kind": "sweep", "metric": "acc_112_7", "mode": "max"}

# Config keys a sweep may vary, each with values btnet_core accepts.
VALUES = {
    "stage2.lr": st.integers(1, 500).map(lambda i: i / 1000),
    "stage2.epochs": st.integers(1, 8),
    "stage2.batch_size": st.sampled_from([8, 16, 32, 64]),
    "compat.type": st.sampled_from(["bct", "l2", "cosine", "none"]),
    "distill.feature": st.sampled_from(["mse", "cosine", "none"]),
}


@st.composite
def valid_sweeps(draw: st.DrawFn) -> tuple[dict, int]:
    """A grid sweep over a few keys; returns the study and how many trials it must plan."""
    keys = draw(st.lists(st.sampled_from(sorted(VALUES)), min_size=1, max_size=3, unique=True))
    space = {
        k: {"choice": draw(st.lists(VALUES[k], min_size=1, max_size=3, unique=True))} for k in keys
    }
    seeds = draw(st.lists(st.integers(0, 99), min_size=1, max_size=3, unique=True))
    study = {**HEADER, "seeds": seeds, "space": space}
    return study, math.prod(len(v["choice"]) for v in space.values()) * len(seeds)


@FAST
@given(valid_sweeps())
def test_valid_spaces_parse_and_plan_every_point_at_every_seed(case: tuple[dict, int]) -> None:
    """Every combination of choices runs at every seed, each trial with its own id."""
    study, expected = case
    specs = plan_trials(parse_study(yaml.safe_dump(study), "p.yaml"))
    assert len(specs) == expected
    assert len({s.trial_id for s in specs}) == expected


def _check_junk(text: str) -> None:
    try:
        parse_study(text, "j.yaml")
    except BTNetError as exc:
        message = str(exc)
        assert message and "\n" not in message, repr(message)
        assert message.startswith("j.yaml"), message
    # Anything else (TypeError, KeyError, a yaml exception...) fails the test by escaping.


@FAST
@given(st.text(max_size=200))
def test_random_text_is_a_study_or_one_config_error_line(text: str) -> None:
    """Arbitrary text never raises anything but a one-line BTNetError naming the file."""
    _check_junk(text)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
TOP_KEYS = [
    "name", "kind", "metric", "mode", "seeds", "space", "search", "samples", "base", "variants",
    "baseline", "scheduler", "resources", "concurrency", "retries", "storage", "base_config",
]  # fmt: skip
SPACE_KEYS = sorted(VALUES) + ["model.width", "model.insertion_depth", "seed", "nope.key"]
SPECS = st.dictionaries(
    st.sampled_from(["choice", "grid", "uniform", "loguniform", "randint", "q", "when", "x"]),
    JUNK,
    max_size=3,
)


@FAST
@given(
    st.dictionaries(st.sampled_from(TOP_KEYS) | st.text(max_size=8), JUNK, max_size=3),
    st.dictionaries(st.sampled_from(SPACE_KEYS), SPECS | JUNK, max_size=3),
)
def test_random_keys_and_values_are_one_config_error_line(top: dict, space: dict) -> None:
    """A sweep with random top-level keys and a random space is valid or one error line."""
    study = {**HEADER, "space": space, **top}
    _check_junk(yaml.safe_dump(study, allow_unicode=True))


# Metrics --------------------------------------------------------------------------------------
def embeddings(rows: int, dim: int) -> st.SearchStrategy[np.ndarray]:
    """Embeddings with no zero row (half-integers: exact, never zero)."""
    return st.lists(
        st.lists(st.integers(-4, 4), min_size=dim, max_size=dim), min_size=rows, max_size=rows
    ).map(lambda v: np.asarray(v, dtype=np.float64) + 0.5)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    n = draw(st.integers(4, 30))
    dim = draw(st.integers(2, 4))
    same = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return draw(embeddings(n, dim)), draw(embeddings(n, dim)), same, draw(st.integers(2, 4))


@FAST
@given(pairs(), st.integers(-10, 10), st.integers(-10, 10))
def test_verification_accuracy_is_a_rate_invariant_to_scale_and_pair_order(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, int], k1: int, k2: int
) -> None:
    """Accuracy in [0, 1]; scaling either side (by a power of two: exact) or swapping the two
    images of every pair gives the same result."""
    e1, e2, same, folds = case
    base = verification_accuracy(e1, e2, same, folds)
    assert 0.0 <= base.accuracy <= 1.0
    assert all(0.0 <= a <= 1.0 for a in base.fold_accuracies)
    scaled = verification_accuracy(e1 * 2.0**k1, e2 * 2.0**k2, same, folds)
    swapped = verification_accuracy(e2, e1, same, folds)
    assert scaled.accuracy == base.accuracy and swapped.accuracy == base.accuracy
    assert scaled.fold_thresholds == base.fold_thresholds


RATES = st.lists(st.integers(0, 1000).map(lambda i: i / 1000), min_size=2, max_size=6, unique=True)


@FAST
@given(
    st.lists(st.tuples(st.floats(-1, 1), st.booleans()), min_size=2, max_size=60).filter(
        lambda v: any(g for _, g in v) and not all(g for _, g in v)
    ),
    RATES,
)
def test_tar_never_falls_as_the_far_target_rises(scored: list, fars: list[float]) -> None:
    """TAR at FAR is monotone: a looser FAR target accepts at least as many genuine pairs."""
    scores, labels = zip(*scored, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # targets below 1/N are reported at FAR 0, with a warning
        result = tar_at_far(np.asarray(scores), np.asarray(labels), fars)
    tars = [result.tar[f] for f in sorted(fars)]
    assert all(0.0 <= t <= 1.0 for t in tars)
    assert tars == sorted(tars)


@st.composite
def identification(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A gallery of 2-6 identities (1-3 images each) and probes of those identities."""
    n_ids = draw(st.integers(2, 6))
    per = draw(st.lists(st.integers(1, 3), min_size=n_ids, max_size=n_ids))
    gallery_ids = np.repeat(np.arange(n_ids), per)
    dim = draw(st.integers(2, 4))
    gallery = draw(embeddings(len(gallery_ids), dim))
    probe_ids = np.asarray(draw(st.lists(st.integers(0, n_ids - 1), min_size=1, max_size=12)))
    return gallery, gallery_ids, draw(embeddings(len(probe_ids), dim)), probe_ids


@FAST
@given(identification(), st.sampled_from(["prototype", "max"]))
def test_cmc_never_falls_as_the_rank_rises(case: tuple, mode: str) -> None:
    """rank-k accuracy is a rate that grows with k and reaches 1 at the number of identities."""
    gallery, gallery_ids, probes, probe_ids = case
    n_ids = len(set(gallery_ids.tolist()))
    ks = list(range(1, n_ids + 2))
    cmc = rank_k(gallery, gallery_ids, probes, probe_ids, ks, gallery_mode=mode).cmc
    values = [cmc[k] for k in ks]
    assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
    assert values[n_ids - 1] == 1.0


@FAST
@given(identification(), st.integers(1, 10), RATES, st.integers(1, 5))
def test_tpir_never_rises_as_the_fpir_target_falls(
    case: tuple, n_unmated: int, fpirs: list[float], rank: int
) -> None:
    """A stricter FPIR target (a higher threshold) never identifies more mated probes."""
    gallery, gallery_ids, mated, mated_ids = case
    unmated = np.roll(mated, 1, axis=1)[:n_unmated] if len(mated) >= n_unmated else mated
    result = tpir_at_fpir(gallery, gallery_ids, mated, mated_ids, unmated, fpirs, rank=rank)
    tpirs = [result.tpir[f] for f in sorted(fpirs, reverse=True)]
    assert all(0.0 <= t <= 1.0 for t in tpirs)
    assert tpirs == sorted(tpirs, reverse=True)
    assert all(result.achieved_fpir[f] <= f for f in fpirs)
