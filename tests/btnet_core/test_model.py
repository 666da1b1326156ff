"""The trunk and branches have the shapes of the paper at every stage and resolution."""

import pytest
import torch

from btnet_core.errors import ConfigError
from btnet_core.model import (
    STAGE_SIZES,
    BTNet,
    IResNet,
    block_names,
    channels,
    paper_insertion_point,
    resolve_insertion_points,
)


@pytest.fixture(scope="module")
def trunk() -> IResNet:
    torch.manual_seed(0)
    return IResNet("r18", width=0.125, embedding_size=32).eval()


def test_trunk_stage_outputs_match_the_paper(trunk):
    # 112 input: 56x56x64, 28x28x128, 14x14x256, 7x7x512 (times the width multiplier).
    names = [f"layer{s}.1" for s in range(1, 5)]
    maps, emb = trunk.features_at(torch.zeros(2, 3, 112, 112), names)
    for stage, name in enumerate(names):
        size, ch = STAGE_SIZES[stage], channels(0.125)[stage]
        assert tuple(maps[name].shape) == (2, ch, size, size)
    assert tuple(emb.shape) == (2, 32)


@pytest.mark.parametrize("resolution", [7, 14, 28, 56])
def test_branch_output_matches_trunk_map_at_insertion_point(trunk, resolution):
    model = BTNet(trunk, [resolution]).eval()
    point = model.insertion_points[resolution]
    assert point == paper_insertion_point(resolution)
    implant, emb = model.embed_branch(torch.zeros(2, 3, resolution, resolution), resolution)
    maps, _ = trunk.features_at(torch.zeros(2, 3, 112, 112), [point])
    assert implant.shape == maps[point].shape
    assert tuple(emb.shape) == (2, 32)


@pytest.mark.parametrize(
    "resolution,point,size", [(28, "layer3.0", 14), (7, "layer4.1", 7), (14, "layer3.1", 14)]
)
def test_deeper_insertion_point_is_owned_by_the_branch(trunk, resolution, point, size):
    model = BTNet(trunk, [resolution], insertion={resolution: point}).eval()
    branch = model.branch(resolution)
    implant = branch(torch.zeros(1, 3, resolution, resolution))
    assert implant.shape[-1] == size
    # The branch owns every block up to and including its insertion point.
    assert len(branch.blocks) == block_names("r18").index(point) + 1


def test_branch_starts_from_trunk_weights(trunk):
    model = BTNet(trunk, [14])
    branch = model.branch(14)
    assert torch.equal(branch.stem.conv.weight, trunk.stem.conv.weight)
    assert torch.equal(branch.blocks[-1].conv2.weight, trunk.block("layer3.0").conv2.weight)
    # ...but is a copy: training it cannot touch the trunk.
    assert branch.stem.conv.weight.data_ptr() != trunk.stem.conv.weight.data_ptr()


def test_insertion_before_sizes_match_is_rejected_with_allowed_blocks():
    with pytest.raises(ConfigError, match=r"layer2\.0 \.\. layer4\.1"):
        resolve_insertion_points("r18", [28], {28: "layer1.1"})


def test_unsupported_resolution_is_rejected():
    with pytest.raises(ConfigError, match=r"allowed: \[7, 14, 28, 56\]"):
        resolve_insertion_points("r18", [21])


def test_insertion_depth_moves_every_branch_deeper():
    points = resolve_insertion_points("r50", [7, 14, 28], depth=2)
    assert points == {7: "layer4.2", 14: "layer3.2", 28: "layer2.2"}
    with pytest.raises(ConfigError, match="insertion_depth"):
        resolve_insertion_points("r18", [7], depth=2)


def test_upsample_path_runs_the_trunk_on_a_112_image(trunk):
    model = BTNet(trunk, [7]).eval()
    x = torch.randn(2, 3, 7, 7)
    up = torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    assert torch.allclose(model.embed(x, "upsample"), trunk(up), atol=1e-6)


def test_missing_branch_names_the_existing_ones(trunk):
    model = BTNet(trunk, [7]).eval()
    with pytest.raises(ConfigError, match=r"branches for \[7\]"):
        model.embed(torch.zeros(1, 3, 14, 14), "branch")
