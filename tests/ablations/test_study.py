"""Study files: validation errors name the file, line, key and what is allowed; ablations and
sweeps expand into the trials a researcher expects, with ids that are stable across runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ablations.study import (
    grid_points,
    load_study,
    parse_study,
    plan_trials,
    random_point,
    reported_metrics,
)
from btnet_core.errors import ConfigError
from search_spaces import DEMO, find_study, shipped_studies

SWEEP = """name: t
kind: sweep
metric: acc_112_7
mode: max
"""
ABLATION = """name: a
kind: ablation
metric: acc_112_7
mode: max
"""

# (case, study text, pattern the one-line error must match)
BAD = [
    (
        "unknown top-level key",
        SWEEP + "space: {stage2.lr: {choice: [0.1]}}\nsamplez: 3\n",
        r"^s\.yaml:6: samplez: unknown key; allowed: name, kind, .*samples",
    ),
    (
        "unknown config key",
        SWEEP + "space:\n  stage2.lrr: {choice: [0.1]}\n",
        r"^s\.yaml:6: space\.stage2\.lrr: unknown config key; allowed under 'stage2': .*lr",
    ),
    (
        "empty range",
        SWEEP + "search: tpe\nsamples: 2\nspace:\n  stage2.lr: {uniform: [0.1, 0.1]}\n",
        r"^s\.yaml:8: space\.stage2\.lr\.uniform: empty range \[0\.1, 0\.1\]",
    ),
    (
        "wrong type of a bound",
        SWEEP + "search: random\nsamples: 2\nspace:\n  stage2.lr: {uniform: [low, 0.1]}\n",
        r"^s\.yaml:8: space\.stage2\.lr\.uniform\.0: must be a number, got 'low'",
    ),
    (
        "choice value btnet_core rejects",
        SWEEP + "space:\n  distill.feature:\n    choice: [mse, l1]\n",
        r"^s\.yaml:7: space\.distill\.feature = 'l1': distill\.feature: 'l1' is not allowed; "
        r"allowed: mse, cosine, none",
    ),
    (
        "range bound btnet_core rejects",
        SWEEP + "search: tpe\nsamples: 2\nspace:\n  model.width: {uniform: [-1.0, 0.5]}\n",
        r"^s\.yaml:8: space\.model\.width = -1\.0: model\.width: must be > 0",
    ),
    (
        "too deep an insertion",
        SWEEP + "space:\n  model.insertion_depth: {randint: [0, 3]}\n",
        r"model\.insertion_depth: 2 is too deep for the 7x7 branch on r18; allowed: 0\.\.1",
    ),
    (
        "bad base value",
        SWEEP + "base:\n  model:\n    width: -2\nspace:\n  stage2.lr: {choice: [0.1]}\n",
        r"^s\.yaml:7: base: model\.width: must be > 0, got -2",
    ),
    (
        "unknown base key",
        SWEEP + "base:\n  stage2:\n    lrate: 1\nspace:\n  stage2.lr: {choice: [0.1]}\n",
        r"^s\.yaml:7: base: unknown key 'stage2\.lrate'; allowed under 'stage2'",
    ),
    (
        "metric not reported",
        SWEEP.replace("acc_112_7", "acc_112_5") + "space:\n  stage2.lr: {choice: [0.1]}\n",
        r"^s\.yaml:3: metric: 'acc_112_5' is not reported .*allowed: .*acc_112_7",
    ),
    (
        "path metric of a baseline method",
        SWEEP.replace("acc_112_7", "acc_112_7_branch")
        + "space:\n  method: {choice: [btnet, upsample]}\n",
        r"metric: 'acc_112_7_branch' is not reported by method upsample",
    ),
    (
        "condition on an unknown value",
        SWEEP + "space:\n  distill.feature: {choice: [mse, none]}"
        "\n  distill.feature_weight: {choice: [1.0], when: {distill.feature: l1}}\n",
        r"^s\.yaml:7: space\.distill\.feature_weight\.when\.distill\.feature: 'l1' is not one of",
    ),
    (
        "condition on a later key",
        SWEEP + "space:\n  distill.feature_weight: {choice: [1.0], "
        "when: {distill.feature: mse}}\n  distill.feature: {choice: [mse, none]}\n",
        r"must name a choice or grid key listed earlier in the space",
    ),
    (
        "continuous key in a grid",
        SWEEP + "space:\n  stage2.lr: {uniform: [0.01, 0.1]}\n",
        r"search grid needs values it can list",
    ),
    (
        "samples with grid",
        SWEEP + "samples: 3\nspace:\n  stage2.lr: {choice: [0.1]}\n",
        r"^s\.yaml:5: samples: does not apply to search grid",
    ),
    (
        "samples missing",
        SWEEP + "search: tpe\nspace:\n  stage2.lr: {choice: [0.1]}\n",
        r"samples: is required for search tpe",
    ),
    (
        "unknown algorithm",
        SWEEP + "search: bohb\nspace:\n  stage2.lr: {choice: [0.1]}\n",
        r"^s\.yaml:5: search\.algorithm: 'bohb' is not allowed; allowed: grid, random, tpe, nsga2",
    ),
    (
        "fractional GPUs above one",
        SWEEP + "resources: {gpus: 1.5}\nspace:\n  stage2.lr: {choice: [0.1]}\n",
        r"resources\.gpus: a fraction must be below 1",
    ),
    (
        "asha with two objectives",
        SWEEP.replace("metric: acc_112_7", "metric: [acc_112_7, macs_7]").replace(
            "mode: max", "mode: [max, min]"
        )
        + "scheduler: asha\nspace:\n"
        "  stage2.lr: {choice: [0.1]}\n",
        r"scheduler: asha stops trials on one metric",
    ),
    (
        "modes do not match metrics",
        SWEEP.replace("mode: max", "mode: [max, min]") + "space:\n  stage2.lr: {choice: [0.1]}\n",
        r"mode: needs one mode .* per metric",
    ),
    (
        "seed searched",
        SWEEP + "space:\n  seed: {choice: [1, 2]}\n",
        r"space\.seed: the seed is set per trial; list seeds under 'seeds:'",
    ),
    (
        "a section as a key",
        SWEEP + "space:\n  distill: {choice: [1]}\n",
        r"space\.distill: is a section; name a key inside it",
    ),
    (
        "duplicate key",
        SWEEP + "space:\n  stage2.lr: {choice: [0.1]}\n  stage2.lr: {choice: [1]}\n",
        r"^s\.yaml:7: space\.stage2\.lr: duplicate key",
    ),
    ("YAML syntax", SWEEP + "space: [\n", r"^s\.yaml:6: YAML syntax error"),
    ("required key", "name: x\nmetric: a\nmode: max\n", r"^s\.yaml: kind: is required"),
    (
        "variant btnet_core rejects",
        ABLATION + "variants:\n  v1:\n    compat.type: bad\n",
        r"^s\.yaml:7: variants\.v1: compat\.type: 'bad' is not allowed; allowed: bct, l2",
    ),
    (
        "variant equal to the baseline",
        ABLATION + "variants:\n  v1: {distill.feature: mse}\n",
        r"variants\.v1: resolves to the baseline config",
    ),
    (
        "space in an ablation",
        ABLATION + "space: {}\nvariants:\n  v: {compat.type: none}\n",
        r"space: applies to kind sweep only",
    ),
    (
        "bad study name",
        SWEEP.replace("name: t", "name: ../etc") + "space:\n  stage2.lr: {choice: [0.1]}\n",
        r"^s\.yaml:1: name: '\.\./etc' is not allowed",
    ),
]


@pytest.mark.parametrize("case,text,pattern", BAD, ids=[c[0] for c in BAD])
def test_invalid_study_is_one_line_naming_file_line_and_key(case, text, pattern):
    """Every mistake is one ConfigError line that says where and what is allowed."""
    with pytest.raises(ConfigError) as info:
        parse_study(text, "s.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message


def test_missing_study_file_is_a_config_error(tmp_path):
    """A path that does not exist is named in the error."""
    with pytest.raises(ConfigError, match="no such study file"):
        load_study(tmp_path / "nope.yaml")


def test_scientific_notation_reads_as_a_number():
    """'1e-3' is a float in a study (plain YAML 1.1 would read a string)."""
    study = parse_study(
        SWEEP + "search: tpe\nsamples: 2\nspace:\n  stage2.lr: {loguniform: [1e-3, 1e-1]}\n",
        "s.yaml",
    )
    assert study.space[0].low == pytest.approx(0.001)


def test_ablation_runs_every_variant_at_every_seed_with_the_baseline():
    """Each variant pairs with the baseline seed by seed; the baseline comes first."""
    study = parse_study(
        ABLATION + "baseline: btnet\nseeds: [3, 4]\nvariants:\n"
        "  no_bct: {compat.type: none}\n  deeper: {model.insertion_depth: 1}\n",
        "s.yaml",
    )
    specs = plan_trials(study)
    assert [(s.variant, s.seed) for s in specs] == [
        ("btnet", 3),
        ("btnet", 4),
        ("no_bct", 3),
        ("no_bct", 4),
        ("deeper", 3),
        ("deeper", 4),
    ]
    assert len({s.trial_id for s in specs}) == 6
    cfg = study.trial_config(specs[2])
    assert cfg["compat"]["type"] == "none" and cfg["seed"] == 3


def test_trial_ids_are_stable_across_loads():
    """The same study file gives the same trial ids (what resume matches on)."""
    path = shipped_studies()["paper_ablation"]
    first = [s.trial_id for s in plan_trials(load_study(path))]
    again = [s.trial_id for s in plan_trials(load_study(path))]
    assert first == again


def test_grid_sets_conditional_keys_only_where_they_apply():
    """A weight that exists only when its loss is on is not crossed with the loss off."""
    study = load_study(find_study("compat_loss"))
    points = grid_points(study.space)
    assert {"compat.type": "bct"} in points and {"compat.type": "none"} in points
    weighted = [p for p in points if "compat.weight" in p]
    assert {p["compat.type"] for p in weighted} == {"l2", "cosine"}
    assert len(points) == 2 + 2 * 3
    assert len(plan_trials(study)) == len(points) * len(study.seeds)


def test_random_points_depend_only_on_seed_and_index():
    """A resumed random search draws exactly the points it drew before."""
    study = parse_study(
        SWEEP + "search: random\nsamples: 5\nspace:\n"
        "  stage2.lr: {loguniform: [0.001, 0.1]}\n"
        "  compat.type: {choice: [bct, l2]}\n"
        "  compat.weight: {uniform: [0.5, 2.0], q: 0.5, when: {compat.type: l2}}\n",
        "s.yaml",
    )
    a = [random_point(study.space, 0, i) for i in range(5)]
    b = [random_point(study.space, 0, i) for i in range(5)]
    assert a == b
    assert a != [random_point(study.space, 1, i) for i in range(5)]
    for p in a:
        assert 0.001 <= p["stage2.lr"] <= 0.1
        assert ("compat.weight" in p) == (p["compat.type"] == "l2")
        if "compat.weight" in p:
            assert p["compat.weight"] in (0.5, 1.0, 1.5, 2.0)


def test_random_search_crosses_grid_keys_with_each_sample():
    """A grid key in a random search runs every value with each sampled point."""
    study = parse_study(
        SWEEP + "search: random\nsamples: 3\nseeds: [0]\nspace:\n"
        "  stage2.lr: {uniform: [0.01, 0.1]}\n"
        "  compat.type: {grid: [bct, none]}\n",
        "s.yaml",
    )
    specs = plan_trials(study)
    assert len(specs) == 6
    assert sorted(s.overrides["compat.type"] for s in specs) == ["bct"] * 3 + ["none"] * 3


def test_every_shipped_study_is_valid():
    """The shipped studies load, and the demo is a small ablation (the README's main job)."""
    studies = {name: load_study(path) for name, path in shipped_studies().items()}
    assert {
        "demo",
        "paper_ablation",
        "insertion_depth",
        "distillation_weights",
        "compat_loss",
        "margin_head",
        "bayesian_all",
    } <= set(studies)
    demo = studies[DEMO]
    assert demo.kind == "ablation" and len(plan_trials(demo)) <= 8
    paper = studies["paper_ablation"]
    methods = {paper.trial_config(s)["method"] for s in plan_trials(paper)}
    assert methods == {"btnet", "upsample", "multires", "separate"}
    assert len(paper.seeds) >= 5
    # The ORL and MS1MV3 studies change the data and the scale, never the variants or seeds.
    for companion in ("paper_ablation_orl", "paper_ablation_ms1mv3"):
        other = studies[companion]
        assert other.variants == paper.variants and other.seeds == paper.seeds, companion
    assert studies["paper_ablation_orl"].base["data"]["source"] == "folder"
    assert studies["paper_ablation_ms1mv3"].base["data"]["source"] == "recordio"
    assert studies["paper_ablation_ms1mv3"].base["model"]["network"] == "r50"
    assert studies["bayesian_all"].metrics == ("acc_112_7", "macs_7")


def test_find_study_takes_a_name_or_a_path(tmp_path):
    """A shipped name and a file path both work; an unknown one lists the shipped studies."""
    assert find_study("demo") == shipped_studies()["demo"]
    assert find_study("demo.yaml") == shipped_studies()["demo"]
    own = tmp_path / "mine.yaml"
    own.write_text("x")
    assert find_study(own) == own
    with pytest.raises(ConfigError, match="shipped: .*demo"):
        find_study("no_such_study")


def test_reported_metrics_follow_the_method():
    """Branch metrics exist for BTNet only; every method reports acc_a_b and macs_r."""
    btnet = load_study(find_study("demo")).base
    upsample = btnet.replace({"method": "upsample"})
    assert {"acc_112_7", "acc_112_7_branch", "branch_params_7", "macs_7"} <= reported_metrics(
        btnet
    )
    assert "acc_112_7_branch" not in reported_metrics(upsample)
    assert {"acc_112_7", "acc_7_7", "macs_7", "acc_112_7_upsample"} <= reported_metrics(upsample)


def test_base_config_file_is_read_relative_to_the_study(tmp_path):
    """base_config names a btnet_core config; base: keys override it."""
    (tmp_path / "cfg.yaml").write_text("model:\n  width: 0.5\nstage2:\n  lr: 0.05\n")
    study_file = tmp_path / "s.yaml"
    study_file.write_text(
        ABLATION + "base_config: cfg.yaml\nbase:\n  stage2: {lr: 0.01}\n"
        "variants:\n  v: {compat.type: none}\n"
    )
    study = load_study(study_file)
    assert study.base["model"]["width"] == 0.5 and study.base["stage2"]["lr"] == 0.01
    assert Path(study.path) == study_file


def test_relative_data_paths_become_absolute_against_the_launch_directory(
    tmp_path, monkeypatch
) -> None:
    """Ray runs trials elsewhere: a relative data.path (base or variant) is made absolute where
    the study is loaded; URIs and absolute paths are kept as written."""
    monkeypatch.chdir(tmp_path)
    text = (
        "name: d\nkind: ablation\nmetric: acc_112_7\nmode: max\nseeds: [0]\n"
        "base: {data: {source: folder, path: ../faces}}\n"
        "variants:\n  other: {data.path: more/faces}\n  remote: {data.path: 's3://b/f'}\n"
        "  fixed: {data.path: /abs/faces}\n"
    )
    study = parse_study(text, "d.yaml")
    assert study.base["data"]["path"] == str(tmp_path.parent / "faces")
    assert study.variants["other"]["data.path"] == str(tmp_path / "more" / "faces")
    assert study.variants["remote"]["data.path"] == "s3://b/f"
    assert study.variants["fixed"]["data.path"] == "/abs/faces"
