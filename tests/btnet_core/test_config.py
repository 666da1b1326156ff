"""A config is validated before any work starts; each mistake is one line naming the key."""

import pytest

from btnet_core.config import DEFAULTS, load_config, parse_overrides, resolve_config, trunk_key
from btnet_core.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_resolve_and_read_by_dotted_key():
    cfg = load_config()
    assert cfg.get("distill.feature") == "mse"
    assert cfg["stage2"]["lr"] == DEFAULTS["stage2"]["lr"]
    assert cfg.flat()["model.network"] == "r18"


def test_overrides_take_yaml_values(tmp_path):
    cfg = load_config(
        write(tmp_path, "model: {width: 0.5}\n"), ["model.resolutions=[7, 14]", "stage2.lr=1e-3"]
    )
    assert cfg["model"]["width"] == 0.5
    assert cfg["model"]["resolutions"] == [7, 14]
    assert cfg["stage2"]["lr"] == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "text,needle",
    [
        ("model: {netwrk: r18}\n", "unknown key 'model.netwrk'; allowed under 'model':"),
        ("stage2: {lr: fast}\n", "stage2.lr: must be a number"),
        (
            "model: {resolutions: [7, 21]}\n",
            "resolution 21 is not supported; allowed: [7, 14, 28, 56]",
        ),
        ("model: {insertion: {28: layer1.1}}\n", "not a valid insertion point"),
        ("head: {type: sphereface}\n", "allowed: arcface, cosface, curricularface, adaface"),
        ("compat: {type: lwf}\n", "allowed: bct, l2, cosine, none"),
        ("data: {source: folder}\n", "data.path: is required"),
        ("head: {type: arcface, h: 0.3}\n", "only applies when head.type is adaface"),
        ("stage1: {amp: 1}\n", "must be true or false"),
        ("model: 3\n", "'model' must be a mapping"),
    ],
)
def test_bad_config_names_file_key_and_allowed(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert needle in message
    assert str(path) in message
    assert "\n" not in message


def test_yaml_syntax_error_gives_the_line(tmp_path):
    path = write(tmp_path, "model:\n  width: [0.5\nseed: 1\n")
    with pytest.raises(ConfigError, match=r"line \d+: YAML syntax error"):
        load_config(path)


def test_unknown_override_key_is_refused():
    with pytest.raises(ConfigError, match="unknown key 'stage3.lr'"):
        load_config(None, ["stage3.lr=1"])
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["stage2.lr"])


def test_trunk_key_ignores_branch_settings_but_not_trunk_settings():
    base = resolve_config({})
    assert trunk_key(base) == trunk_key(
        base.replace({"distill.weight": 0.1, "model.resolutions": [7]})
    )
    assert trunk_key(base) != trunk_key(base.replace({"seed": 1}))
    assert trunk_key(base) != trunk_key(base.replace({"stage1.epochs": 9}))
    assert trunk_key(base) != trunk_key(base.replace({"method": "multires"}))
