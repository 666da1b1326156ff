"""Margin heads: the classification layer that trains a face embedding.

A margin head holds one prototype vector per training identity (``weight``, shape
``(num_classes, embedding_size)``). Given raw embeddings and their labels it computes the cosine
between every L2-normalised embedding and every normalised prototype, penalises the target class
with a margin, multiplies by a scale ``s`` and returns the cross-entropy of those logits.

Four heads differ only in how the target class is penalised (``theta`` is the angle between an
embedding and its target prototype):

==================  ===========================================================================
``arcface``         ``s * cos(theta + m)``: additive angular margin (Deng et al. 2019)
``cosface``         ``s * (cos(theta) - m)``: additive cosine margin (Wang et al. 2018)
``curricularface``  ArcFace's target, plus hard negatives re-weighted by a running ``t``
                    (Huang et al. 2020)
``adaface``         a margin that moves between ArcFace-like and CosFace-like with the
                    embedding norm, a proxy of image quality (Kim et al. 2022)
==================  ===========================================================================

Numerics: the heads compute in float32 with autocast disabled, whatever the caller's autocast
context (a scale of 64 times a float16 cosine loses the margin in rounding), and clamp cosines
to ``[-1 + eps, 1 - eps]`` so that ``acos`` and ``sqrt(1 - cos^2)`` keep finite gradients.

Running statistics (CurricularFace's ``t``, AdaFace's norm mean and std) are buffers: they are
in ``state_dict`` and update only in training mode. A head in ``eval()`` mode is therefore a
fixed function, which is what backward-compatible branch training wants from the trunk's frozen
classifier.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from btnet_core.errors import ConfigError

__all__ = [
    "HEADS",
    "HEAD_PARAMS",
    "AdaFace",
    "ArcFace",
    "CosFace",
    "CurricularFace",
    "MarginHead",
    "build_head",
]


class MarginHead(nn.Module):
    """Base class of the margin heads: normalised prototypes, scaled cosine logits, CE loss.

    Subclasses implement :meth:`_margin_logits`, which receives the clamped float32 cosine
    matrix and returns the unscaled logits with the margin applied.

    Args:
        embedding_size: Width of the embeddings (512 for IResNet).
        num_classes: Number of training identities.
        scale: The logit scale ``s``.
        margin: The margin ``m`` (its meaning depends on the head).
        eps: Cosines are clamped to ``[-1 + eps, 1 - eps]``.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float,
        margin: float,
        *,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if embedding_size < 1 or num_classes < 2:
            raise ConfigError(
                f"{type(self).__name__}: embedding_size must be >= 1 and num_classes >= 2, "
                f"got {embedding_size} and {num_classes}"
            )
        if scale <= 0:
            raise ConfigError(f"{type(self).__name__}: scale must be > 0, got {scale}")
        if not 0 <= margin < math.pi / 2:
            raise ConfigError(f"{type(self).__name__}: margin must be in [0, pi/2), got {margin}")
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.scale = float(scale)
        self.margin = float(margin)
        self.eps = float(eps)
        # Only the direction of a prototype matters; a small normal start as in InsightFace.
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def extra_repr(self) -> str:
        return (
            f"embedding_size={self.embedding_size}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}"
        )

    def cosine(self, embeddings: Tensor) -> Tensor:
        """Clamped float32 cosine between each embedding and each class prototype, ``(N, C)``."""
        emb = F.normalize(embeddings.float(), dim=1)
        weight = F.normalize(self.weight.float(), dim=1)
        return (emb @ weight.t()).clamp(-1.0 + self.eps, 1.0 - self.eps)

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Scaled float32 logits with the margin applied to each sample's target class.

        Args:
            embeddings: Raw (not normalised) embeddings, ``(N, embedding_size)``, any float
                dtype.
            labels: Target class of each embedding, ``(N,)`` integers in
                ``[0, num_classes)``.

        Returns:
            Logits of shape ``(N, num_classes)``, float32.
        """
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"{type(self).__name__}: embeddings must be (N, {self.embedding_size}), "
                f"got {tuple(embeddings.shape)}"
            )
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: labels must be ({embeddings.shape[0]},), "
                f"got {tuple(labels.shape)}"
            )
        labels = labels.long()
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cos = self.cosine(embeddings)
            return self.scale * self._margin_logits(cos, labels, embeddings)

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """Mean cross-entropy loss of :meth:`logits` (a float32 scalar)."""
        logits = self.logits(embeddings, labels)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            return F.cross_entropy(logits, labels.long())

    def _margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        """Unscaled logits from the clamped cosines; the subclass's margin rule."""
        raise NotImplementedError

    @staticmethod
    def _replace_target(cos: Tensor, labels: Tensor, target: Tensor) -> Tensor:
        """A copy of ``cos`` whose target entries (one per row) are ``target``."""
        return cos.scatter(1, labels[:, None], target[:, None])


class _AngularMarginMixin:
    """``cos(theta + m)`` with InsightFace's fallback where ``theta + m`` would pass ``pi``.

    ``cos(theta + m)`` stops decreasing in ``theta`` once ``theta + m > pi``, so a sample that is
    already wrong would be pushed less. Below the threshold ``cos(theta) < cos(pi - m)`` the
    target becomes ``cos(theta) - m * sin(m)`` instead (the first-order expansion of
    ``cos(theta + m)`` at ``theta = pi - m``), which keeps decreasing in ``theta`` and stays
    below the plain cosine. Like InsightFace's, it is not continuous: at the threshold it jumps
    from ``-1`` to ``-cos(m) - m * sin(m)`` (-1.12 for m = 0.5). With ``easy_margin`` the margin
    applies only where ``cos(theta) > 0`` and the plain cosine is used elsewhere.
    """

    margin: float
    easy_margin: bool

    def _arc_target(self, target_cos: Tensor) -> Tensor:
        sin = torch.sqrt((1.0 - target_cos * target_cos).clamp_min(0.0))
        with_margin = target_cos * math.cos(self.margin) - sin * math.sin(self.margin)
        if self.easy_margin:
            return torch.where(target_cos > 0, with_margin, target_cos)
        threshold = math.cos(math.pi - self.margin)
        fallback = target_cos - self.margin * math.sin(self.margin)
        return torch.where(target_cos > threshold, with_margin, fallback)


class ArcFace(_AngularMarginMixin, MarginHead):
    """Additive angular margin: target logit ``s * cos(theta + m)``.

    Args:
        embedding_size: Width of the embeddings.
        num_classes: Number of training identities.
        scale: The logit scale ``s``.
        margin: The angular margin ``m`` in radians.
        easy_margin: Apply the margin only where ``cos(theta) > 0`` instead of the
            ``theta + m > pi`` fallback.
        eps: Cosine clamp.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        *,
        easy_margin: bool = False,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale, margin, eps=eps)
        self.easy_margin = easy_margin

    def _margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        target = cos.gather(1, labels[:, None])[:, 0]
        return self._replace_target(cos, labels, self._arc_target(target))


class CosFace(MarginHead):
    """Additive cosine margin: target logit ``s * (cos(theta) - m)``.

    Args:
        embedding_size: Width of the embeddings.
        num_classes: Number of training identities.
        scale: The logit scale ``s``.
        margin: The cosine margin ``m``.
        eps: Cosine clamp.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.4,
        *,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale, margin, eps=eps)

    def _margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        target = cos.gather(1, labels[:, None])[:, 0]
        return self._replace_target(cos, labels, target - self.margin)


class CurricularFace(_AngularMarginMixin, MarginHead):
    """ArcFace's target plus curriculum re-weighting of hard negatives (Huang et al. 2020).

    A non-target class ``j`` is *hard* for a sample when ``cos(theta_j) > cos(theta_y + m)``.
    Hard negatives become ``cos_j * (t + cos_j)``, where ``t`` is a running mean of the target
    cosine (``t <- t_alpha * mean(cos_y) + (1 - t_alpha) * t``, starting at 0): early in training
    ``t`` is small and hard negatives weigh less; as the model improves ``t`` grows and they weigh
    more. ``t`` updates in training mode only, before it is used, as in the paper's code.

    NOTE: under data parallelism each process keeps its own ``t`` from its own batches, as the
    reference implementation does; an all-reduce of the batch mean would make them agree.

    Args:
        embedding_size: Width of the embeddings.
        num_classes: Number of training identities.
        scale: The logit scale ``s``.
        margin: The angular margin ``m`` in radians.
        t_alpha: Update rate of the running ``t`` (the paper's momentum 0.99 on the old value).
        eps: Cosine clamp.
    """

    t: Tensor

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        t_alpha: float = 0.01,
        *,
        eps: float = 1e-6,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale, margin, eps=eps)
        if not 0 <= t_alpha <= 1:
            raise ConfigError(f"CurricularFace: t_alpha must be in [0, 1], got {t_alpha}")
        self.t_alpha = float(t_alpha)
        self.easy_margin = False
        self.register_buffer("t", torch.zeros(1))

    def _margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        target = cos.gather(1, labels[:, None])[:, 0]
        sin = torch.sqrt((1.0 - target * target).clamp_min(0.0))
        # Hardness is judged against cos(theta_y + m) itself, not the fallback value.
        target_with_margin = target * math.cos(self.margin) - sin * math.sin(self.margin)
        if self.training:
            with torch.no_grad():
                self.t.mul_(1.0 - self.t_alpha).add_(self.t_alpha * target.detach().mean())
        hard = cos > target_with_margin[:, None]
        t = self.t.to(cos.dtype)
        modulated = torch.where(hard, cos * (t + cos), cos)
        return self._replace_target(modulated, labels, self._arc_target(target))


class AdaFace(MarginHead):
    """Quality-adaptive margin (Kim et al. 2022): the embedding norm decides the margin.

    The norm ``z = ||embedding||`` (clipped to [0.001, 100], no gradient) is standardised with
    running batch statistics and scaled: ``zhat = clip(h * (z - mean) / (std + eps), -1, 1)``.
    The target logit is ``s * (cos(clip(theta - m * zhat, eps, pi - eps)) - (m + m * zhat))``:
    a low-quality sample (``zhat = -1``) gets ArcFace's ``cos(theta + m)``, a high-quality one
    (``zhat = 1``) ``cos(theta - m) - 2m``, a harder additive margin. The running mean and std
    start at 20 and 100 and update with rate ``t_alpha`` in training mode only.

    Args:
        embedding_size: Width of the embeddings.
        num_classes: Number of training identities.
        scale: The logit scale ``s``.
        margin: The margin ``m``.
        h: Concentration of the standardised norm.
        t_alpha: Update rate of the running norm statistics.
        eps: Cosine clamp, also the angle clamp and the std guard (1e-3 as in the paper's code).
    """

    batch_mean: Tensor
    batch_std: Tensor

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
        *,
        eps: float = 1e-3,
    ) -> None:
        super().__init__(embedding_size, num_classes, scale, margin, eps=eps)
        if h <= 0:
            raise ConfigError(f"AdaFace: h must be > 0, got {h}")
        if not 0 <= t_alpha <= 1:
            raise ConfigError(f"AdaFace: t_alpha must be in [0, 1], got {t_alpha}")
        self.h = float(h)
        self.t_alpha = float(t_alpha)
        self.register_buffer("batch_mean", torch.full((1,), 20.0))
        self.register_buffer("batch_std", torch.full((1,), 100.0))

    def margin_scaler(self, embeddings: Tensor) -> Tensor:
        """The standardised, clipped norm ``zhat`` of each embedding, ``(N,)``; no gradient.

        In training mode this also updates the running norm statistics.
        """
        norms = embeddings.detach().float().norm(dim=1).clamp(0.001, 100.0)
        if self.training:
            with torch.no_grad():
                a = self.t_alpha
                self.batch_mean.mul_(1.0 - a).add_(a * norms.mean())
                # The std of a single sample is undefined; such a batch leaves it unchanged.
                if norms.numel() > 1:
                    self.batch_std.mul_(1.0 - a).add_(a * norms.std())
        scaler = (norms - self.batch_mean) / (self.batch_std + self.eps)
        return (self.h * scaler).clamp(-1.0, 1.0)

    def _margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor) -> Tensor:
        zhat = self.margin_scaler(embeddings)
        target = cos.gather(1, labels[:, None])[:, 0]
        theta = torch.acos(target) - self.margin * zhat
        theta = theta.clamp(self.eps, math.pi - self.eps)
        new_target = torch.cos(theta) - (self.margin + self.margin * zhat)
        return self._replace_target(cos, labels, new_target)


HEADS: dict[str, type[MarginHead]] = {
    "arcface": ArcFace,
    "cosface": CosFace,
    "curricularface": CurricularFace,
    "adaface": AdaFace,
}

#: Each head's tunable parameters and their defaults (the config layer validates against these).
HEAD_PARAMS: dict[str, dict[str, float]] = {
    "arcface": {"scale": 64.0, "margin": 0.5},
    "cosface": {"scale": 64.0, "margin": 0.4},
    "curricularface": {"scale": 64.0, "margin": 0.5, "t_alpha": 0.01},
    "adaface": {"scale": 64.0, "margin": 0.4, "h": 0.333, "t_alpha": 0.01},
}


def build_head(name: str, embedding_size: int, num_classes: int, **params: Any) -> MarginHead:
    """Build a head by name with the defaults of :data:`HEAD_PARAMS` overridden by ``params``.

    Args:
        name: One of ``arcface``, ``cosface``, ``curricularface``, ``adaface``.
        embedding_size: Width of the embeddings.
        num_classes: Number of training identities.
        **params: Overrides of the head's parameters (keys of ``HEAD_PARAMS[name]``).

    Raises:
        ConfigError: The name, a parameter key or a parameter value is not allowed.
    """
    if name not in HEADS:
        raise ConfigError(f"head: unknown name {name!r}; allowed: {', '.join(sorted(HEADS))}")
    allowed = HEAD_PARAMS[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"head {name!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    values: dict[str, float] = dict(allowed)
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"head {name!r}: parameter {key} must be a number, got {value!r}")
        values[key] = float(value)
    return HEADS[name](embedding_size, num_classes, **values)
