"""Cost figures for r50 agree with the paper's table (BTNET.md) within 1%."""

import json

import pytest

from btnet_core.cost import cost_table
from btnet_lab.cli import main

# BTNET.md: MACs per image and branch-only parameters of r50.
PAPER_MACS = {112: 6.309e9, 28: 5.236e9, 14: 4.276e9, 7: 1.517e9}
PAPER_BRANCH_PARAMS = {28: 0.45e6, 14: 2.26e6, 7: 21.29e6}


@pytest.fixture(scope="module")
def r50():
    return cost_table("r50", 1.0, (7, 14, 28, 112))


def test_r50_macs_per_resolution_match_the_paper(r50):
    costs, _ = r50
    for c in costs:
        expected = PAPER_MACS[c.resolution] if c.path == "branch" else PAPER_MACS[112]
        assert c.macs == pytest.approx(expected, rel=0.01), (c.resolution, c.path)


def test_r50_parameters_match_the_paper(r50):
    costs, storage = r50
    for c in costs:
        assert c.params == pytest.approx(43.59e6, rel=0.01)
        if c.resolution in PAPER_BRANCH_PARAMS and c.path == "branch":
            # The table gives millions to two decimals; agree at that precision.
            assert round(c.branch_params / 1e6, 2) == PAPER_BRANCH_PARAMS[c.resolution] / 1e6
    assert storage.shared_trunk_and_branches == pytest.approx(67.6e6, rel=0.01)
    assert storage.separate_models == pytest.approx(174.4e6, rel=0.01)


def test_cost_command_json_lists_both_paths(capsys):
    assert (
        main(
            ["cost", "--network", "r18", "--width", "0.25", "--resolutions", "7", "112", "--json"]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert {(r["resolution"], r["path"]) for r in rows} == {
        (7, "branch"),
        (7, "upsample"),
        (112, "branch"),
        (112, "upsample"),
    }
    for row in rows:
        assert {"resolution", "path", "params", "macs", "branch_params"} <= row.keys()
    seven = {r["path"]: r for r in rows if r["resolution"] == 7}
    assert seven["branch"]["macs"] < seven["upsample"]["macs"]


def test_cost_command_rejects_unsupported_resolution(capsys):
    assert main(["cost", "--resolutions", "21"]) == 2
    assert "allowed" in capsys.readouterr().err
