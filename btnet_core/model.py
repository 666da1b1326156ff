"""BTNet: an IResNet trunk with one branch per input resolution implanted into it.

The trunk (TNet) is an IResNet in the InsightFace convention, with a width multiplier so CPU
runs can be small. A branch (BNet) for input resolution ``r`` runs the ``r x r`` face at its
native size: it copies the trunk's stem and blocks but keeps stride 1 while its feature map is
still smaller than the trunk's, until it reaches a trunk block whose output has the same shape.
That block is the *insertion point*; the branch's output is implanted there and the rest of
the trunk, shared by all branches, finishes the embedding.

Block names are ``"layer{stage}.{index}"`` (``"layer4.0"``). For a 112 input the trunk's
stage outputs are 56, 28, 14 and 7 pixels wide, so the paper's insertion points are
``layer1.0`` (r=56), ``layer2.0`` (28), ``layer3.0`` (14) and ``layer4.0`` (7). Any later
block is a valid insertion point too; the branch then owns every block up to it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from btnet_core.degrade import upsample
from btnet_core.errors import ConfigError

TRUNK_INPUT = 112
STAGE_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
    "r200": (6, 26, 60, 6),
}
STAGE_CHANNELS = (64, 128, 256, 512)
# Spatial size of each stage's output for a 112x112 input (every stage halves it).
STAGE_SIZES = (56, 28, 14, 7)


def channels(width: float) -> tuple[int, ...]:
    """Stage widths for a width multiplier (at least 1 channel each)."""
    return tuple(max(1, round(c * width)) for c in STAGE_CHANNELS)


def block_names(network: str) -> list[str]:
    """Every trunk block in forward order, e.g. ``["layer1.0", "layer1.1", ...]``."""
    return [
        f"layer{stage + 1}.{i}" for stage, n in enumerate(STAGE_BLOCKS[network]) for i in range(n)
    ]


def paper_insertion_point(resolution: int) -> str:
    """The first block of the first stage whose output matches an ``r x r`` input."""
    if resolution not in STAGE_SIZES:
        raise ConfigError(f"resolution {resolution} has no branch; allowed: {sorted(STAGE_SIZES)}")
    return f"layer{STAGE_SIZES.index(resolution) + 1}.0"


def resolve_insertion_points(
    network: str,
    resolutions: Iterable[int],
    insertion: Mapping[int, str] | None = None,
    depth: int = 0,
    source: str = "<config>",
) -> dict[int, str]:
    """Map each branch resolution to its insertion block, checking it is a valid one.

    ``insertion`` names a block per resolution explicitly; otherwise the paper's point moved
    ``depth`` blocks deeper is used. A block before the sizes match, or past the last block,
    is a ConfigError that lists the valid blocks.
    """
    names = block_names(network)
    insertion = dict(insertion or {})
    out: dict[int, str] = {}
    for r in resolutions:
        first = names.index(paper_insertion_point(r))
        valid = names[first:]
        if r in insertion:
            block = insertion[r]
            if block not in valid:
                raise ConfigError(
                    f"{source}: model.insertion.{r}: {block!r} is not a valid insertion point "
                    f"for a {r}x{r} input on {network}; allowed: {valid[0]} .. {valid[-1]} "
                    f"(blocks where the feature map is {r}x{r} or smaller)"
                )
            out[r] = block
        else:
            if first + depth >= len(names):
                raise ConfigError(
                    f"{source}: model.insertion_depth: {depth} is too deep for the {r}x{r} "
                    f"branch on {network}; allowed: 0..{len(names) - 1 - first}"
                )
            out[r] = names[first + depth]
    return out


class IBasicBlock(nn.Module):
    """The IResNet block: BN, conv3x3, BN, PReLU, conv3x3 (with the stride), BN, + shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=1e-5),
            )

    def set_stride(self, stride: int) -> None:
        """Change the stride in place; the weights do not depend on it.

        A block that neither strides nor changes width needs no projection on its shortcut,
        so stride 1 on such a block drops it (as the authors' branches do: their first block
        of a branch's first stage has an identity shortcut).
        """
        self.conv2.stride = (stride, stride)
        if self.downsample is not None:
            if stride == 1 and self.conv1.in_channels == self.conv2.out_channels:
                self.downsample = None
            else:
                self.downsample[0].stride = (stride, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn1(x)
        out = self.conv1(out)
        out = self.bn2(out)
        out = self.prelu(out)
        out = self.conv2(out)
        out = self.bn3(out)
        return out + identity


class Stem(nn.Module):
    """conv3x3 stride 1, BN, PReLU."""

    def __init__(self, planes: int):
        super().__init__()
        self.conv = nn.Conv2d(3, planes, 3, stride=1, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)

    def forward(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn(self.conv(x)))


class EmbeddingHead(nn.Module):
    """BN2d, dropout, flatten, linear to the embedding, BatchNorm1d with its weight fixed at 1."""

    def __init__(self, planes: int, embedding_size: int, dropout: float = 0.0):
        super().__init__()
        self.bn = nn.BatchNorm2d(planes, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout)
        spatial = STAGE_SIZES[-1] ** 2
        self.fc = nn.Linear(planes * spatial, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(self.bn(x))
        x = self.fc(torch.flatten(x, 1))
        return self.features(x)


class IResNet(nn.Module):
    """The trunk: an IResNet for 112x112 faces, ``width`` times the usual channels."""

    def __init__(
        self,
        network: str = "r50",
        width: float = 1.0,
        embedding_size: int = 512,
        dropout: float = 0.0,
    ):
        super().__init__()
        if network not in STAGE_BLOCKS:
            raise ConfigError(
                f"network {network!r} is not supported; allowed: {', '.join(STAGE_BLOCKS)}"
            )
        self.network = network
        self.width = width
        self.embedding_size = embedding_size
        ch = channels(width)
        self.stem = Stem(ch[0])
        inplanes = ch[0]
        for stage, (n, planes) in enumerate(zip(STAGE_BLOCKS[network], ch, strict=True)):
            blocks = [IBasicBlock(inplanes, planes, stride=2)]
            blocks += [IBasicBlock(planes, planes) for _ in range(n - 1)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.head = EmbeddingHead(ch[-1], embedding_size, dropout)
        self._init_weights()
        self._names = block_names(network)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def block(self, name: str) -> IBasicBlock:
        stage, index = name.removeprefix("layer").split(".")
        return getattr(self, f"layer{stage}")[int(index)]

    def blocks(self, start: int = 0, stop: int | None = None) -> list[IBasicBlock]:
        return [self.block(n) for n in self._names[start:stop]]

    def block_index(self, name: str) -> int:
        return self._names.index(name)

    def forward(self, x: Tensor) -> Tensor:
        """The embedding (before L2 normalisation) of 112x112 faces."""
        return self.forward_from(self.stem(x), None)

    def forward_from(self, features: Tensor, after: str | None) -> Tensor:
        """Finish the embedding from a feature map implanted after block ``after``."""
        start = 0 if after is None else self.block_index(after) + 1
        for block in self.blocks(start):
            features = block(features)
        return self.head(features)

    def features_at(self, x: Tensor, names: Sequence[str]) -> tuple[dict[str, Tensor], Tensor]:
        """Feature maps after each named block, and the embedding, in one forward pass."""
        wanted = set(names)
        maps: dict[str, Tensor] = {}
        h = self.stem(x)
        for name, block in zip(self._names, self.blocks(), strict=True):
            h = block(h)
            if name in wanted:
                maps[name] = h
        return maps, self.head(h)


class Branch(nn.Module):
    """The branch network for one input resolution: trunk stem and blocks up to the insertion
    point, copied from the trunk, with stride 1 wherever the trunk would shrink the map below
    its native size."""

    def __init__(self, trunk: IResNet, resolution: int, insertion_point: str):
        super().__init__()
        self.resolution = resolution
        self.insertion_point = insertion_point
        self.stem = copy.deepcopy(trunk.stem)
        last = trunk.block_index(insertion_point)
        names = block_names(trunk.network)[: last + 1]
        blocks = []
        size = resolution
        for name in names:
            block = copy.deepcopy(trunk.block(name))
            stage = int(name[len("layer")]) - 1
            # The trunk's map at the end of this stage is STAGE_SIZES[stage] wide; the branch
            # only strides once its map is larger than that.
            if block.conv2.stride[0] == 2:
                if size > STAGE_SIZES[stage]:
                    size //= 2
                else:
                    block.set_stride(1)
            blocks.append(block)
        assert size == STAGE_SIZES[int(insertion_point[len("layer")]) - 1], (resolution, size)
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """The feature map to implant (same shape as the trunk's after the insertion point)."""
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            raise ValueError(f"branch {self.resolution} got a {x.shape[-2]}x{x.shape[-1]} input")
        return self.blocks(self.stem(x))


class BTNet(nn.Module):
    """One shared trunk and a branch per resolution."""

    def __init__(
        self,
        trunk: IResNet,
        resolutions: Iterable[int] = (),
        insertion: Mapping[int, str] | None = None,
        insertion_depth: int = 0,
    ):
        super().__init__()
        self.trunk = trunk
        self.insertion_points = resolve_insertion_points(
            trunk.network, list(resolutions), insertion, insertion_depth
        )
        self.branches = nn.ModuleDict(
            {str(r): Branch(trunk, r, p) for r, p in self.insertion_points.items()}
        )

    @property
    def resolutions(self) -> list[int]:
        return sorted(self.insertion_points)

    def branch(self, resolution: int) -> Branch:
        return self.branches[str(resolution)]

    def embed_branch(self, x: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
        """(implanted feature map, embedding) of ``r x r`` faces through the branch."""
        branch = self.branch(resolution)
        implant = branch(x)
        return implant, self.trunk.forward_from(implant, branch.insertion_point)

    def embed(self, x: Tensor, path: str = "branch", upsample_kernel: str = "bilinear") -> Tensor:
        """The embedding of a batch of square faces at any supported resolution.

        ``path="branch"`` routes an ``r x r`` face through its branch (112 goes through the
        trunk); ``path="upsample"`` resizes it to 112 and runs the trunk (the baseline).
        """
        r = x.shape[-1]
        if r == TRUNK_INPUT:
            return self.trunk(x)
        if path == "branch":
            if str(r) not in self.branches:
                raise ConfigError(
                    f"no branch for {r}x{r} faces; this model has branches for "
                    f"{self.resolutions} (use the upsample path)"
                )
            return self.embed_branch(x, r)[1]
        if path == "upsample":
            return self.trunk(upsample(x, TRUNK_INPUT, upsample_kernel))
        raise ValueError(f"unknown path {path!r}")

    def trunk_state(self) -> dict[str, Tensor]:
        return self.trunk.state_dict()

    def branch_state(self, resolution: int) -> dict[str, Tensor]:
        return self.branch(resolution).state_dict()


def build_trunk(model_cfg: Mapping) -> IResNet:
    """The trunk described by a config's ``model`` section."""
    return IResNet(
        model_cfg["network"],
        model_cfg["width"],
        model_cfg["embedding_size"],
        model_cfg.get("dropout", 0.0),
    )


def build_btnet(model_cfg: Mapping, trunk: IResNet | None = None) -> BTNet:
    """BTNet with a branch per ``model.resolutions``, starting from the trunk's weights."""
    trunk = trunk if trunk is not None else build_trunk(model_cfg)
    return BTNet(
        trunk,
        model_cfg["resolutions"],
        model_cfg.get("insertion") or {},
        model_cfg.get("insertion_depth", 0),
    )
