"""What each path of BTNet costs: parameters and multiply-accumulates per image.

MACs count the convolutions and linear layers, as InsightFace does when it reports
"GFLOPs" (BatchNorm, PReLU, additions and the resize are left out: they are under 1% for
IResNets). Parameters of a path are every parameter the path touches, so a branch path has
the trunk's count; ``branch_params`` is what the branch adds to the shared trunk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from btnet_core.model import TRUNK_INPUT, BTNet, IResNet, build_btnet

# Training costs about three forward passes (forward, input gradient, weight gradient).
TRAIN_FLOPS_PER_MAC = 2 * 3


@dataclass(frozen=True)
class PathCost:
    """Cost of embedding one face of ``resolution`` through ``path``."""

    resolution: int
    path: str  # "branch" (112: the trunk itself) or "upsample"
    params: int
    macs: int
    branch_params: int
    insertion_point: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def count_macs(module: nn.Module, fn, *args) -> int:
    """MACs of the conv and linear layers that run while ``fn(*args)`` executes."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += out.numel() // out.shape[0] * m.in_features

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        with torch.no_grad():
            fn(*args)
    finally:
        for h in handles:
            h.remove()
    return total


def _count_params(modules: Sequence[nn.Module]) -> int:
    seen: set[int] = set()
    total = 0
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


def path_costs(model: BTNet, resolutions: Sequence[int]) -> list[PathCost]:
    """Cost of the branch path and the upsample baseline at each resolution."""
    was_training = model.training
    model.eval()
    trunk_params = _count_params([model.trunk])
    hr = torch.zeros(1, 3, TRUNK_INPUT, TRUNK_INPUT)
    trunk_macs = count_macs(model.trunk, model.trunk, hr)
    out: list[PathCost] = []
    for r in resolutions:
        if r == TRUNK_INPUT:
            out.append(PathCost(r, "branch", trunk_params, trunk_macs, 0, None))
            out.append(PathCost(r, "upsample", trunk_params, trunk_macs, 0, None))
            continue
        branch = model.branch(r)
        x = torch.zeros(1, 3, r, r)
        macs = count_macs(model, model.embed, x, "branch")
        own = _count_params([branch])
        # Parameters the path touches: the branch plus the trunk blocks after the insertion
        # point and the head (the trunk prefix it replaces is not used).
        start = model.trunk.block_index(branch.insertion_point) + 1
        rest = [*model.trunk.blocks(start), model.trunk.head]
        out.append(
            PathCost(r, "branch", own + _count_params(rest), macs, own, branch.insertion_point)
        )
        out.append(PathCost(r, "upsample", trunk_params, trunk_macs, 0, None))
    model.train(was_training)
    return out


@dataclass(frozen=True)
class StorageCost:
    """Parameters stored for a set of resolutions: BTNet against one model per resolution."""

    resolutions: tuple[int, ...]
    shared_trunk_and_branches: int
    separate_models: int

    @property
    def ratio(self) -> float:
        return self.shared_trunk_and_branches / self.separate_models


def storage_cost(model: BTNet, resolutions: Sequence[int]) -> StorageCost:
    trunk = _count_params([model.trunk])
    branches = sum(_count_params([model.branch(r)]) for r in resolutions if r != TRUNK_INPUT)
    return StorageCost(tuple(resolutions), trunk + branches, trunk * len(resolutions))


def cost_table(
    network: str,
    width: float = 1.0,
    resolutions: Sequence[int] = (7, 14, 28, 112),
    embedding_size: int = 512,
    insertion: dict[int, str] | None = None,
    insertion_depth: int = 0,
) -> tuple[list[PathCost], StorageCost]:
    """Path costs and storage for a network built from scratch (weights do not matter)."""
    branch_res = [r for r in resolutions if r != TRUNK_INPUT]
    model = build_btnet(
        {
            "network": network,
            "width": width,
            "embedding_size": embedding_size,
            "resolutions": branch_res,
            "insertion": insertion or {},
            "insertion_depth": insertion_depth,
        }
    )
    return path_costs(model, resolutions), storage_cost(model, resolutions)


def trunk_macs(trunk: IResNet) -> int:
    """MACs of one 112x112 face through the trunk."""
    x = torch.zeros(1, 3, TRUNK_INPUT, TRUNK_INPUT)
    was_training = trunk.training
    trunk.eval()
    macs = count_macs(trunk, trunk, x)
    trunk.train(was_training)
    return macs
