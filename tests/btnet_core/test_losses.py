"""Distillation and compatibility losses on small hand-computed cases."""

import math

import pytest
import torch

from btnet_core.losses import alignment_loss, check_finite, distance, distillation_loss

PAPER = {
    "weight": 0.5,
    "feature": "mse",
    "feature_weight": 1.0,
    "embedding": "mse",
    "embedding_weight": 1.0,
}


def test_mse_distance_is_the_mean_squared_difference():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    assert float(distance(s, t, "mse")) == pytest.approx((0 + 4 + 9 + 0) / 4)


def test_cosine_distance_is_one_minus_cosine_per_sample():
    s = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    t = torch.tensor([[0.0, 2.0], [2.0, 2.0]])
    # Sample 1 is orthogonal (1 - 0), sample 2 parallel (1 - 1).
    assert float(distance(s, t, "cosine")) == pytest.approx(0.5)


def test_none_distance_is_zero_and_unknown_is_refused():
    assert float(distance(torch.ones(2, 2), torch.zeros(2, 2), "none")) == 0.0
    with pytest.raises(ValueError, match="allowed: mse, cosine, none"):
        distance(torch.ones(1), torch.ones(1), "l1")


def test_paper_distillation_weights_feature_and_embedding_terms():
    implant, trunk_map = torch.full((1, 2, 2, 2), 2.0), torch.zeros(1, 2, 2, 2)  # mse 4
    emb, trunk_emb = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 1.0]])  # mse 0.5
    total, parts = distillation_loss(implant, trunk_map, emb, trunk_emb, PAPER)
    assert float(total) == pytest.approx(0.5 * (4.0 + 0.5))
    assert parts == {"distill_feature": pytest.approx(4.0), "distill_embedding": 0.5}
    no_feature = {**PAPER, "feature": "none", "embedding_weight": 2.0}
    total, _ = distillation_loss(implant, trunk_map, emb, trunk_emb, no_feature)
    assert float(total) == pytest.approx(0.5 * 2.0 * 0.5)


def test_distillation_does_not_push_gradients_into_the_teacher():
    teacher = torch.ones(1, 3, requires_grad=True)
    student = torch.zeros(1, 3, requires_grad=True)
    total, _ = distillation_loss(student, teacher, student, teacher, PAPER)
    total.backward()
    assert teacher.grad is None and student.grad is not None


def test_alignment_losses_on_normalised_embeddings():
    e = torch.tensor([[3.0, 0.0]])
    t = torch.tensor([[0.0, 5.0]])  # orthogonal after normalisation
    assert float(alignment_loss(e, t, "l2")) == pytest.approx(2.0)
    assert float(alignment_loss(e, t, "cosine")) == pytest.approx(1.0)
    assert float(alignment_loss(e, 2 * e, "l2")) == pytest.approx(0.0, abs=1e-7)
    assert float(alignment_loss(e, t, "bct")) == 0.0


def test_non_finite_losses_are_detected():
    assert check_finite(torch.tensor(1.5))
    assert not check_finite(torch.tensor(math.nan))
    assert not check_finite(torch.tensor(math.inf))
