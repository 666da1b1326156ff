"""The losses of branch training: distillation from the trunk and backward compatibility.

Stage 2 trains each branch on the same batch the trunk (the teacher) sees at 112x112, but
downsampled to the branch's resolution. Its loss is

    L = L_cls + distill.weight * (feature_weight * D_f(implant, trunk map)
                                  + embedding_weight * D_e(branch emb, trunk emb))
        [+ compat.weight * A(branch emb, trunk emb)   for compat l2 / cosine]

where ``L_cls`` is the classification loss: with ``compat.type == "bct"`` (the paper's) the
branch embedding is classified by the trunk's frozen classifier, so it must land in the
trunk's embedding space (the "influence loss" of backward-compatible training); with any
other choice the branch gets a classifier of its own, and only distillation and the optional
alignment term A tie its embeddings to the trunk's.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


def distance(student: Tensor, teacher: Tensor, kind: str) -> Tensor:
    """Mean distance between student and teacher tensors.

    ``mse``: mean squared difference over all elements (the paper's). ``cosine``: mean of
    ``1 - cos`` between the flattened per-sample tensors. ``none``: zero.
    """
    if kind == "none":
        return student.new_zeros(())
    if kind == "mse":
        return F.mse_loss(student.float(), teacher.float())
    if kind == "cosine":
        s = student.float().flatten(1)
        t = teacher.float().flatten(1)
        return (1.0 - F.cosine_similarity(s, t, dim=1, eps=1e-8)).mean()
    raise ValueError(f"unknown distance {kind!r}; allowed: mse, cosine, none")


def distillation_loss(
    implant: Tensor,
    trunk_map: Tensor,
    embedding: Tensor,
    trunk_embedding: Tensor,
    cfg: Mapping,
) -> tuple[Tensor, dict[str, float]]:
    """Branch distillation (feature map and embedding), weighted as in ``cfg`` (``distill``)."""
    feature = distance(implant, trunk_map.detach(), cfg["feature"])
    emb = distance(embedding, trunk_embedding.detach(), cfg["embedding"])
    total = cfg["weight"] * (cfg["feature_weight"] * feature + cfg["embedding_weight"] * emb)
    return total, {
        "distill_feature": float(feature.detach()),
        "distill_embedding": float(emb.detach()),
    }


def alignment_loss(embedding: Tensor, trunk_embedding: Tensor, kind: str) -> Tensor:
    """Compatibility by alignment: ``l2`` (squared distance) or ``cosine`` (1 - cos) between
    the L2-normalised branch embedding and the trunk's embedding of the HR face."""
    if kind not in ("l2", "cosine"):
        return embedding.new_zeros(())
    e = F.normalize(embedding.float(), dim=1)
    t = F.normalize(trunk_embedding.detach().float(), dim=1)
    if kind == "l2":
        return (e - t).pow(2).sum(dim=1).mean()
    return (1.0 - (e * t).sum(dim=1)).mean()


def check_finite(loss: Tensor) -> bool:
    """Whether a loss is a finite number (NaN and inf mean the run diverged)."""
    return bool(torch.isfinite(loss).all())
