"""Tests of btnet_core.heads: margin rules against hand-computed logits, numerics, API."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from btnet_core.errors import ConfigError
from btnet_core.heads import (
    HEAD_PARAMS,
    HEADS,
    AdaFace,
    ArcFace,
    CosFace,
    CurricularFace,
    MarginHead,
    build_head,
)

# The hand-computed cases live in 2-d with three classes whose prototypes point along +x, +y
# and -x. The -x prototype has length 2, to check that prototypes are normalised.
PROTOTYPES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-2.0, 0.0]])


def _head(cls: type[MarginHead], **kwargs: float) -> MarginHead:
    head = cls(2, 3, **kwargs)
    with torch.no_grad():
        head.weight.copy_(PROTOTYPES)
    return head


def _at(angle: float, norm: float = 1.0) -> list[float]:
    """A 2-d embedding of the given length at ``angle`` radians from +x."""
    return [norm * math.cos(angle), norm * math.sin(angle)]


def _plain_cosines(angle: float) -> list[float]:
    """Cosines of a unit vector at ``angle`` with the three prototypes (+x, +y, -x)."""
    return [math.cos(angle), math.sin(angle), -math.cos(angle)]


def test_arcface_matches_hand_computed_logits() -> None:
    """ArcFace's target is s*cos(theta+m); others s*cos; raw embedding norms do not matter."""
    head = _head(ArcFace, scale=64.0, margin=0.5)
    emb = torch.tensor([_at(0.3, norm=3.0), _at(1.2, norm=0.2)])
    labels = torch.tensor([0, 1])
    got = head.logits(emb, labels)
    row0 = _plain_cosines(0.3)
    row0[0] = math.cos(0.3 + 0.5)
    row1 = _plain_cosines(1.2)
    # Class 1 (+y) sits at pi/2 - 1.2 from the embedding.
    row1[1] = math.cos((math.pi / 2 - 1.2) + 0.5)
    expected = 64.0 * torch.tensor([row0, row1])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)


def test_arcface_falls_back_past_pi() -> None:
    """Where theta + m > pi the target becomes cos(theta) - m*sin(m), not cos(theta + m)."""
    head = _head(ArcFace, scale=64.0, margin=0.5)
    theta = 2.9  # 2.9 + 0.5 > pi
    got = head.logits(torch.tensor([_at(theta)]), torch.tensor([0]))
    expected_target = math.cos(theta) - 0.5 * math.sin(0.5)
    assert got[0, 0].item() == pytest.approx(64.0 * expected_target, abs=1e-3)
    # Past the threshold the target keeps falling with theta and stays below the plain cosine
    # (cos(theta + m) itself would rise again there).
    thetas = [2.7, 2.8, 2.9, 3.0, 3.1]
    targets = head.logits(torch.tensor([_at(t) for t in thetas]), torch.zeros(5, dtype=torch.long))
    targets = targets[:, 0] / 64.0
    assert (targets[1:] < targets[:-1]).all()
    assert (targets < torch.cos(torch.tensor(thetas))).all()


def test_arcface_easy_margin_skips_obtuse_targets() -> None:
    """With easy_margin the margin applies only where cos(theta) > 0."""
    head = _head(ArcFace, scale=10.0, margin=0.5, easy_margin=True)
    got = head.logits(torch.tensor([_at(2.0), _at(0.3)]), torch.tensor([0, 0]))
    assert got[0, 0].item() == pytest.approx(10.0 * math.cos(2.0), abs=1e-4)
    assert got[1, 0].item() == pytest.approx(10.0 * math.cos(0.8), abs=1e-4)


def test_cosface_matches_hand_computed_logits() -> None:
    """CosFace's target is s*(cos(theta) - m)."""
    head = _head(CosFace, scale=30.0, margin=0.4)
    got = head.logits(torch.tensor([_at(0.3, norm=5.0)]), torch.tensor([2]))
    row = _plain_cosines(0.3)
    row[2] -= 0.4
    torch.testing.assert_close(got, 30.0 * torch.tensor([row]), atol=1e-4, rtol=1e-5)


def test_curricularface_matches_hand_computed_logits_and_t() -> None:
    """CurricularFace: t <- 0.01*mean(cos_y) + 0.99*t first; hard negatives -> cos*(t + cos)."""
    head = _head(CurricularFace, scale=64.0, margin=0.5)
    head.train()
    emb = torch.tensor([_at(0.3), _at(1.2)])
    labels = torch.tensor([0, 0])
    got = head.logits(emb, labels)
    t = 0.01 * (math.cos(0.3) + math.cos(1.2)) / 2
    assert head.t.item() == pytest.approx(t, rel=1e-5)
    # Sample 0: cos(0.3 + 0.5) = 0.697; no other class beats it, nothing is modulated.
    row0 = _plain_cosines(0.3)
    row0[0] = math.cos(0.8)
    # Sample 1: cos(1.2 + 0.5) = -0.129; class 1 (cos 0.932) is hard, class 2 (-0.362) is not.
    row1 = _plain_cosines(1.2)
    row1[0] = math.cos(1.7)
    row1[1] = math.sin(1.2) * (t + math.sin(1.2))
    torch.testing.assert_close(got, 64.0 * torch.tensor([row0, row1]), atol=1e-4, rtol=1e-5)


def test_curricularface_t_is_a_running_mean() -> None:
    """Two training steps compound: t2 = 0.99*t1 + 0.01*mean2."""
    head = _head(CurricularFace)
    head.train()
    head.logits(torch.tensor([_at(0.3)]), torch.tensor([0]))
    head.logits(torch.tensor([_at(0.6)]), torch.tensor([0]))
    t1 = 0.01 * math.cos(0.3)
    assert head.t.item() == pytest.approx(0.99 * t1 + 0.01 * math.cos(0.6), rel=1e-5)


def test_curricularface_uses_fallback_past_pi() -> None:
    """CurricularFace shares ArcFace's theta + m > pi fallback for the target."""
    head = _head(CurricularFace, scale=1.0, margin=0.5)
    head.eval()
    got = head.logits(torch.tensor([_at(2.9)]), torch.tensor([0]))
    assert got[0, 0].item() == pytest.approx(math.cos(2.9) - 0.5 * math.sin(0.5), abs=1e-4)


def test_adaface_matches_hand_computed_logits() -> None:
    """AdaFace's target is cos(theta - m*zhat) - m*(1 + zhat), zhat the standardised norm.

    zhat = clip(h * (|e| - mean) / (std + eps), -1, 1). Covers a high-norm sample, a low-norm
    (ArcFace-like) one and the angle clamp at pi.
    """
    head = _head(AdaFace, scale=64.0, margin=0.4, h=0.333)
    head.eval()  # fixed statistics, set by hand
    head.batch_mean.fill_(10.0)
    head.batch_std.fill_(3.0)
    # Norm 13: zhat = 0.333 * 3 / 3.001. Norm 0.5: 0.333 * -9.5 / 3.001 < -1, clipped to -1.
    emb = torch.tensor([_at(0.3, norm=13.0), _at(0.3, norm=0.5), _at(3.0, norm=0.5)])
    labels = torch.tensor([0, 0, 0])
    got = head.logits(emb, labels)
    zhat = 0.333 * 3.0 / 3.001
    high = math.cos(0.3 - 0.4 * zhat) - (0.4 + 0.4 * zhat)
    low = math.cos(0.3 + 0.4)  # zhat = -1: ArcFace-like, no additive part
    # theta + m = 3.4 passes pi: the angle is clamped to pi - eps.
    clamped = math.cos(math.pi - 1e-3)
    expected = torch.tensor(
        [
            [high, math.sin(0.3), -math.cos(0.3)],
            [low, math.sin(0.3), -math.cos(0.3)],
            [clamped, math.sin(3.0), -math.cos(3.0)],
        ]
    )
    torch.testing.assert_close(got, 64.0 * expected, atol=2e-3, rtol=1e-5)


def test_adaface_updates_norm_statistics_in_training() -> None:
    """In training mode the running mean/std move by t_alpha towards the batch's (unbiased)."""
    head = _head(AdaFace, t_alpha=0.01)
    head.train()
    emb = torch.tensor([_at(0.1, norm=4.0), _at(0.5, norm=8.0)])
    head.logits(emb, torch.tensor([0, 1]))
    std = math.sqrt(((4 - 6) ** 2 + (8 - 6) ** 2) / 1)
    assert head.batch_mean.item() == pytest.approx(0.99 * 20 + 0.01 * 6.0, rel=1e-6)
    assert head.batch_std.item() == pytest.approx(0.99 * 100 + 0.01 * std, rel=1e-6)


def test_adaface_single_sample_batch_keeps_std() -> None:
    """A batch of one has no std; it must not turn the running std into NaN."""
    head = _head(AdaFace)
    head.train()
    loss = head(torch.tensor([_at(0.1, norm=4.0)]), torch.tensor([0]))
    assert torch.isfinite(loss)
    assert head.batch_std.item() == pytest.approx(100.0)


@pytest.mark.parametrize("name", ["curricularface", "adaface"])
def test_eval_mode_leaves_buffers_alone(name: str) -> None:
    """In eval mode a head is a fixed function (BCT uses the trunk's classifier frozen)."""
    head = build_head(name, 8, 5)
    head.eval()
    buffers = {k: v.clone() for k, v in head.named_buffers()}
    head(torch.randn(6, 8) * 5, torch.randint(0, 5, (6,)))
    for key, value in head.named_buffers():
        torch.testing.assert_close(value, buffers[key])
    # The same call in training mode does move them.
    head.train()
    head(torch.randn(6, 8) * 5, torch.randint(0, 5, (6,)))
    assert any(not torch.equal(v, buffers[k]) for k, v in head.named_buffers())


@pytest.mark.parametrize("name", sorted(HEADS))
def test_forward_is_cross_entropy_of_logits(name: str) -> None:
    """forward() returns the mean cross-entropy of logits() as a scalar."""
    torch.manual_seed(0)
    head = build_head(name, 8, 5).eval()
    emb, labels = torch.randn(6, 8), torch.randint(0, 5, (6,))
    loss = head(emb, labels)
    assert loss.dim() == 0
    torch.testing.assert_close(loss, F.cross_entropy(head.logits(emb, labels), labels))


@pytest.mark.parametrize("name", sorted(HEADS))
def test_gradients_reach_embeddings_and_prototypes(name: str) -> None:
    """The loss back-propagates finite, non-zero gradients into embeddings and weight."""
    torch.manual_seed(0)
    head = build_head(name, 8, 5)
    emb = torch.randn(6, 8, requires_grad=True)
    head(emb, torch.randint(0, 5, (6,))).backward()
    assert emb.grad is not None and head.weight.grad is not None
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()
    assert emb.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(HEADS))
def test_gradients_finite_when_embedding_equals_prototype(name: str) -> None:
    """cos = 1 exactly would give acos'/sqrt' = inf; the clamp keeps gradients finite."""
    head = build_head(name, 4, 3)
    emb = head.weight.detach()[:2].clone().mul(7.0).requires_grad_(True)
    head(emb, torch.tensor([0, 1])).backward()
    assert torch.isfinite(emb.grad).all() and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("name", sorted(HEADS))
def test_training_lowers_the_loss(name: str) -> None:
    """A few SGD steps on a learnable linear embedding of separable data reduce the loss."""
    torch.manual_seed(0)
    centres = torch.randn(4, 16) * 3
    labels = torch.arange(4).repeat(8)
    x = centres[labels] + 0.3 * torch.randn(32, 16)
    embed = torch.nn.Linear(16, 8)
    head = build_head(name, 8, 4, scale=16.0)
    opt = torch.optim.SGD([*embed.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
    losses = []
    for _ in range(25):
        loss = head(embed(x), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(HEADS))
def test_half_precision_autocast_computes_in_float32(name: str, dtype: torch.dtype) -> None:
    """Under autocast the logits are float32 and equal the float32 logits of the same input."""
    torch.manual_seed(0)
    embed = torch.nn.Linear(16, 8)
    head = build_head(name, 8, 5).eval()
    x, labels = torch.randn(6, 16), torch.randint(0, 5, (6,))
    with torch.autocast("cpu", dtype=dtype):
        emb = embed(x)
        assert emb.dtype == dtype
        logits = head.logits(emb, labels)
        loss = head(emb, labels)
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32
    torch.testing.assert_close(logits, head.logits(emb.float(), labels))
    loss.backward()
    assert torch.isfinite(embed.weight.grad).all()


def test_running_statistics_are_in_state_dict() -> None:
    """CurricularFace's t and AdaFace's norm statistics are buffers that save and load."""
    curricular = build_head("curricularface", 4, 3)
    assert set(curricular.state_dict()) == {"weight", "t"}
    ada = build_head("adaface", 4, 3)
    assert set(ada.state_dict()) == {"weight", "batch_mean", "batch_std"}
    ada.train()
    ada(torch.randn(5, 4) * 9, torch.randint(0, 3, (5,)))
    fresh = build_head("adaface", 4, 3)
    fresh.load_state_dict(ada.state_dict())
    torch.testing.assert_close(fresh.batch_mean, ada.batch_mean)
    torch.testing.assert_close(fresh.batch_std, ada.batch_std)
    assert fresh.batch_mean.item() != pytest.approx(20.0)


def test_head_params_match_constructor_defaults() -> None:
    """HEAD_PARAMS names every head and its keys and defaults are the constructors' own."""
    assert set(HEAD_PARAMS) == set(HEADS) == {"arcface", "cosface", "curricularface", "adaface"}
    for name, cls in HEADS.items():
        signature = inspect.signature(cls.__init__)
        for key, default in HEAD_PARAMS[name].items():
            assert signature.parameters[key].default == default, (name, key)


def test_build_head_applies_overrides() -> None:
    """build_head passes the given parameters and keeps the other defaults."""
    head = build_head("adaface", 16, 10, margin=0.3)
    assert isinstance(head, AdaFace)
    assert head.margin == 0.3 and head.scale == 64.0 and head.h == 0.333
    assert tuple(head.weight.shape) == (10, 16)


def test_build_head_rejects_unknown_name() -> None:
    """An unknown head is one ConfigError line naming the allowed heads."""
    with pytest.raises(ConfigError, match="arcface, cosface, curricularface") as info:
        build_head("sphereface", 8, 4)
    assert "\n" not in str(info.value) and "sphereface" in str(info.value)


def test_build_head_rejects_unknown_parameter() -> None:
    """A parameter the head does not have is refused with the allowed keys."""
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) h; allowed: margin, scale"):
        build_head("arcface", 8, 4, h=0.3)


def test_build_head_rejects_non_numeric_and_out_of_range_values() -> None:
    """Values must be numbers in range; the message names the key."""
    with pytest.raises(ConfigError, match="margin must be a number"):
        build_head("cosface", 8, 4, margin="0.4")
    with pytest.raises(ConfigError, match="scale must be > 0"):
        build_head("cosface", 8, 4, scale=0.0)
    with pytest.raises(ConfigError, match="t_alpha"):
        build_head("curricularface", 8, 4, t_alpha=2.0)


def test_logits_reject_mismatched_shapes() -> None:
    """Embeddings of the wrong width or labels of the wrong length are caller bugs."""
    head = build_head("arcface", 8, 4)
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        head.logits(torch.randn(3, 7), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        head.logits(torch.randn(3, 8), torch.zeros(2, dtype=torch.long))
