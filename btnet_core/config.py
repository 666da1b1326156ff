"""The run configuration of btnet-lab: one nested mapping, validated once, then read-only.

A config file is YAML whose keys are a subset of :data:`DEFAULTS`; everything it leaves out
takes the default. ``--set key=value`` overrides use dotted keys (``stage2.lr=0.01``) and YAML
values (``model.resolutions=[7,14]``). Validation happens before any work starts: an unknown
key, a wrong type or a value out of range is a :class:`~btnet_core.errors.ConfigError` whose
message names the file, the key and what is allowed.

Example::

    cfg = load_config("configs/synthetic_tiny.yaml", overrides=["stage2.epochs=2"])
    cfg["model"]["width"]          # 0.25
    cfg.get("distill.feature")     # "mse"
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from btnet_core.errors import ConfigError

#: Interpolation kernels of the one degradation function (btnet_core.degrade). Kept here, not
#: there, so that reading and validating a config never imports torch: Ray workers of studies,
#: the trunk coordinator and the analysis tools load configs without training anything.
DOWNSAMPLE_KERNELS: tuple[str, ...] = ("area", "bilinear", "bicubic")

NETWORKS = ("r18", "r34", "r50", "r100", "r200")
BRANCH_RESOLUTIONS = (7, 14, 28, 56)
EVAL_RESOLUTIONS = (7, 14, 28, 56, 112)
METHODS = ("btnet", "upsample", "multires", "separate")
HEAD_TYPES = ("arcface", "cosface", "curricularface", "adaface")
DISTANCES = ("mse", "cosine", "none")
COMPAT_TYPES = ("bct", "l2", "cosine", "none")

# Each stage of training has the same knobs; stage 1 trains the trunk, stage 2 the branches.
_STAGE_DEFAULTS: dict[str, Any] = {
    "epochs": 4,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "warmup_epochs": 0.0,
    "poly_power": 2.0,
    "grad_clip": 5.0,
    "amp": True,  # only takes effect on CUDA
}

# The defaults are small enough to train on a laptop CPU in minutes (IResNet-18 at width
# 0.25, synthetic faces); the loss settings are the paper's. Paper-scale runs set network,
# width, data and epochs in their config file (see configs/ms1mv3_r50.yaml).
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N
    # btnet: trunk + branches; upsample: trunk only, low-resolution probes resized to 112;
    # multires: trunk trained with multi-resolution augmentation, upsample path at test;
    # separate: one trunk per resolution trained on that resolution (resized to 112).
    "method": "btnet",
    "model": {
        "network": "r18",
        "width": 0.25,
        "embedding_size": 128,
        "resolutions": [7, 14, 28],
        # resolution -> trunk block name ("layer4.1"); unset: the paper's insertion point
        "insertion": {},
        # extra trunk blocks every branch owns beyond its insertion point (0 = the paper)
        "insertion_depth": 0,
        # "frozen": trunk BN statistics and affine parameters never change in stage 2;
        # "trainable": the authors' released behaviour (their freeze-by-name misses BN).
        "trunk_bn": "frozen",
        "dropout": 0.0,
    },
    "head": {
        "type": "arcface",
        "scale": None,  # None: the head's published default
        "margin": None,
        "h": None,  # AdaFace only
        "t_alpha": None,  # AdaFace only
    },
    "distill": {
        "weight": 0.5,
        "feature": "mse",
        "feature_weight": 1.0,
        "embedding": "mse",
        "embedding_weight": 1.0,
    },
    "compat": {"type": "bct", "weight": 1.0},
    "stage1": {
        **_STAGE_DEFAULTS,
        "multires": False,
        "multires_resolutions": [112, 56, 28, 14, 7],
    },
    "stage2": {**_STAGE_DEFAULTS, "lr": 0.02},
    "data": {
        "source": "synthetic",  # synthetic | folder | recordio
        "path": None,
        "identities": 96,  # synthetic only
        "images_per_identity": 12,  # synthetic only
        "held_out": 0.25,  # identities kept for evaluation: a fraction or a count
        "num_workers": 0,
    },
    "degrade": {
        "kernel": "area",
        "antialias": True,
        "blur_sigma": 0.0,
        "noise_std": 0.0,
        "jpeg_quality": None,
    },
    "eval": {
        "every": 1,  # epochs between evaluations (and checkpoints)
        "pairs": 600,
        "folds": 10,
        "resolutions": [7, 14, 28, 112],
        "flip": True,
        # open-set identification of held-out probes at every resolution (osi_* metrics)
        "openset": False,
    },
}

# Keys whose value is a free-form mapping rather than a fixed set of sub-keys.
_OPEN_MAPPINGS = {"model.insertion"}


class Config(Mapping[str, Any]):
    """A validated, read-only run configuration (a nested mapping of plain values)."""

    def __init__(self, data: dict[str, Any]):
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Read a dotted key such as ``"stage2.lr"``."""
        node: Any = self._data
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as plain dicts and lists, fit for YAML or JSON."""
        return copy.deepcopy(self._data)

    def flat(self) -> dict[str, Any]:
        """Dotted keys to leaf values, e.g. ``{"stage2.lr": 0.02, ...}``."""
        return flatten(self._data)

    def replace(self, overrides: Mapping[str, Any], source: str = "<override>") -> Config:
        """A new config with dotted-key overrides applied and validated."""
        data = self.to_dict()
        for key, value in overrides.items():
            set_dotted(data, key, value, source)
        return resolve_config(data, source)

    def __repr__(self) -> str:
        return f"Config({self._data!r})"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys; lists stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and dotted not in _OPEN_MAPPINGS:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def set_dotted(data: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set ``data[a][b][c] = value`` for ``key == "a.b.c"``, checking the key exists."""
    parts = key.split(".")
    node = data
    default_node: Any = DEFAULTS
    for depth, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[: depth + 1])
        if prefix in _OPEN_MAPPINGS:
            node = node.setdefault(part, {})
            default_node = None
            continue
        if not isinstance(default_node, Mapping) or part not in default_node:
            raise ConfigError(f"{source}: unknown key '{key}'; {_allowed_keys(prefix)}")
        node = node.setdefault(part, {})
        default_node = default_node[part]
    last = parts[-1]
    if default_node is not None and (
        not isinstance(default_node, Mapping) or last not in default_node
    ):
        raise ConfigError(f"{source}: unknown key '{key}'; {_allowed_keys(key)}")
    node[last] = value


def _allowed_keys(key: str) -> str:
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    node: Any = DEFAULTS
    for part in parent.split(".") if parent else []:
        node = node.get(part, {}) if isinstance(node, Mapping) else {}
    if not isinstance(node, Mapping):
        return "it has no sub-keys"
    where = f"under '{parent}'" if parent else "at the top level"
    return f"allowed {where}: {', '.join(sorted(node))}"


def parse_overrides(pairs: Iterable[str], source: str = "--set") -> dict[str, Any]:
    """Parse ``key=value`` strings; values are YAML (``1e-3``, ``[7, 14]``, ``null``)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"{source}: '{pair}' is not key=value (e.g. stage2.lr=0.01)")
        key, raw = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{source}: {key}: value '{raw}' is not valid YAML ({exc})".replace("\n", " ")
            ) from None
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: YAML syntax error: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of keys, not {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a YAML config (or the defaults when ``path`` is None) with ``key=value`` overrides."""
    data = read_yaml(path) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    merged = merge(DEFAULTS, data, source)
    for key, value in parse_overrides(overrides).items():
        set_dotted(merged, key, value, "--set")
    return resolve_config(merged, source)


def merge(
    base: Mapping[str, Any], update: Mapping[str, Any], source: str, prefix: str = ""
) -> dict:
    """Deep-merge ``update`` into a copy of ``base``, refusing keys ``base`` does not have."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str):
            raise ConfigError(f"{source}: key {key!r} under '{prefix[:-1]}' must be a string")
        if dotted in _OPEN_MAPPINGS:
            out[key] = value
            continue
        if key not in base:
            raise ConfigError(f"{source}: unknown key '{dotted}'; {_allowed_keys(dotted)}")
        if isinstance(base[key], Mapping):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{source}: '{dotted}' must be a mapping with keys "
                    f"{', '.join(sorted(base[key]))}, got {value!r}"
                )
            out[key] = merge(base[key], value, source, dotted + ".")
        else:
            out[key] = value
    return out


def resolve_config(data: Mapping[str, Any], source: str = "<config>") -> Config:
    """Fill defaults, check every key, type and value; return a read-only Config."""
    merged = merge(DEFAULTS, data, source)
    _Validator(source).check(merged)
    return Config(merged)


class _Validator:
    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.source}: {key}: {message}")

    def number(
        self,
        d: Mapping,
        key: str,
        path: str,
        *,
        lo=None,
        hi=None,
        integer=False,
        lo_open=False,
        nullable=False,
    ) -> None:
        value = d[key]
        if value is None and nullable:
            return
        if isinstance(value, str) and not integer:
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept it as the number it means.
            try:
                value = d[key] = float(value)
            except ValueError:
                pass
        ok_types = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_types):
            kind = "an integer" if integer else "a number"
            self.fail(path, f"must be {kind}, got {value!r}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            self.fail(path, f"must be {'>' if lo_open else '>='} {lo}, got {value!r}")
        if hi is not None and value > hi:
            self.fail(path, f"must be <= {hi}, got {value!r}")

    def choice(self, d: Mapping, key: str, path: str, allowed: Iterable[Any]) -> None:
        allowed = tuple(allowed)
        if d[key] not in allowed:
            self.fail(path, f"{d[key]!r} is not allowed; allowed: {', '.join(map(str, allowed))}")

    def boolean(self, d: Mapping, key: str, path: str) -> None:
        if not isinstance(d[key], bool):
            self.fail(path, f"must be true or false, got {d[key]!r}")

    def resolutions(self, values: Any, path: str, allowed: tuple[int, ...]) -> None:
        if not isinstance(values, list) or not values:
            self.fail(path, f"must be a non-empty list of resolutions from {list(allowed)}")
        for r in values:
            if isinstance(r, bool) or r not in allowed:
                self.fail(path, f"resolution {r!r} is not supported; allowed: {list(allowed)}")
        if len(set(values)) != len(values):
            self.fail(path, f"lists a resolution twice: {values}")

    def check(self, c: dict[str, Any]) -> None:
        self.number(c, "seed", "seed", lo=0, integer=True)
        device = c["device"]
        if not isinstance(device, str) or not (
            device in ("auto", "cpu", "cuda") or device.startswith("cuda:")
        ):
            self.fail("device", f"{device!r} is not allowed; allowed: auto, cpu, cuda, cuda:N")
        self.choice(c, "method", "method", METHODS)

        m = c["model"]
        self.choice(m, "network", "model.network", NETWORKS)
        self.number(m, "width", "model.width", lo=0, hi=4, lo_open=True)
        if round(64 * m["width"]) < 1:
            self.fail("model.width", f"{m['width']} leaves no channels in the first stage")
        self.number(m, "embedding_size", "model.embedding_size", lo=2, integer=True)
        self.resolutions(m["resolutions"], "model.resolutions", BRANCH_RESOLUTIONS)
        self.number(m, "insertion_depth", "model.insertion_depth", lo=0, integer=True)
        self.choice(m, "trunk_bn", "model.trunk_bn", ("frozen", "trainable"))
        self.number(m, "dropout", "model.dropout", lo=0, hi=1)
        if not isinstance(m["insertion"], Mapping):
            self.fail(
                "model.insertion", "must map a resolution to a trunk block, e.g. {7: layer4.1}"
            )
        normalised = {}
        for r, block in m["insertion"].items():
            try:
                res = int(r)
            except (TypeError, ValueError):
                res = -1
            if res not in m["resolutions"]:
                self.fail(
                    f"model.insertion.{r}", f"is not one of model.resolutions {m['resolutions']}"
                )
            if not isinstance(block, str):
                self.fail(
                    f"model.insertion.{r}", f"must be a block name like 'layer4.1', got {block!r}"
                )
            normalised[res] = block
        m["insertion"] = normalised
        # The insertion points themselves are checked against the architecture here, so that
        # a bad one fails before any work starts (the model module names the valid blocks).
        from btnet_core.model import resolve_insertion_points  # local: model imports torch

        resolve_insertion_points(
            m["network"], m["resolutions"], m["insertion"], m["insertion_depth"], self.source
        )

        h = c["head"]
        self.choice(h, "type", "head.type", HEAD_TYPES)
        for key in ("scale", "margin", "h", "t_alpha"):
            self.number(h, key, f"head.{key}", nullable=True)
        if h["type"] != "adaface":
            for key in ("h", "t_alpha"):
                if h[key] is not None:
                    self.fail(f"head.{key}", "only applies when head.type is adaface")

        d = c["distill"]
        for key in ("weight", "feature_weight", "embedding_weight"):
            self.number(d, key, f"distill.{key}", lo=0)
        self.choice(d, "feature", "distill.feature", DISTANCES)
        self.choice(d, "embedding", "distill.embedding", DISTANCES)

        self.choice(c["compat"], "type", "compat.type", COMPAT_TYPES)
        self.number(c["compat"], "weight", "compat.weight", lo=0)

        for stage in ("stage1", "stage2"):
            s = c[stage]
            self.number(s, "epochs", f"{stage}.epochs", lo=0, integer=True)
            self.number(s, "batch_size", f"{stage}.batch_size", lo=2, integer=True)
            self.number(s, "lr", f"{stage}.lr", lo=0, lo_open=True)
            self.number(s, "momentum", f"{stage}.momentum", lo=0, hi=1)
            self.number(s, "weight_decay", f"{stage}.weight_decay", lo=0)
            self.number(s, "warmup_epochs", f"{stage}.warmup_epochs", lo=0)
            self.number(s, "poly_power", f"{stage}.poly_power", lo=0)
            self.number(s, "grad_clip", f"{stage}.grad_clip", lo=0)
            self.boolean(s, "amp", f"{stage}.amp")
        self.boolean(c["stage1"], "multires", "stage1.multires")
        self.resolutions(
            c["stage1"]["multires_resolutions"], "stage1.multires_resolutions", EVAL_RESOLUTIONS
        )

        data = c["data"]
        self.choice(data, "source", "data.source", ("synthetic", "folder", "recordio"))
        if data["source"] != "synthetic" and not isinstance(data["path"], str):
            self.fail("data.path", f"is required (a path) when data.source is {data['source']}")
        self.number(data, "identities", "data.identities", lo=4, integer=True)
        self.number(data, "images_per_identity", "data.images_per_identity", lo=2, integer=True)
        self.number(data, "held_out", "data.held_out", lo=0, lo_open=True)
        if isinstance(data["held_out"], float) and data["held_out"] >= 1:
            self.fail("data.held_out", "a fraction must be below 1 (or give a whole count)")
        self.number(data, "num_workers", "data.num_workers", lo=0, integer=True)

        g = c["degrade"]
        self.choice(g, "kernel", "degrade.kernel", DOWNSAMPLE_KERNELS)
        self.boolean(g, "antialias", "degrade.antialias")
        self.number(g, "blur_sigma", "degrade.blur_sigma", lo=0)
        self.number(g, "noise_std", "degrade.noise_std", lo=0)
        self.number(
            g, "jpeg_quality", "degrade.jpeg_quality", lo=1, hi=100, integer=True, nullable=True
        )

        e = c["eval"]
        self.number(e, "every", "eval.every", lo=1, integer=True)
        self.number(e, "pairs", "eval.pairs", lo=20, integer=True)
        self.number(e, "folds", "eval.folds", lo=2, integer=True)
        self.resolutions(e["resolutions"], "eval.resolutions", EVAL_RESOLUTIONS)
        self.boolean(e, "flip", "eval.flip")
        self.boolean(e, "openset", "eval.openset")


def config_hash(cfg: Mapping[str, Any], keys: Iterable[str] | None = None) -> str:
    """A stable short hash of the config (or of the given dotted keys only)."""
    flat = flatten(cfg if not isinstance(cfg, Config) else cfg.to_dict())
    if keys is not None:
        wanted = tuple(keys)
        flat = {k: v for k, v in flat.items() if k.startswith(wanted)}
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# What determines a trained trunk: two runs whose values of these keys agree can share one.
# The device is left out on purpose: a trunk trained on CUDA serves CPU evaluation too.
TRUNK_KEYS = (
    "seed",
    "model.network",
    "model.width",
    "model.embedding_size",
    "model.dropout",
    "head.",
    "stage1.",
    "data.",
    "degrade.",
)


def multires_trunk(cfg: Mapping[str, Any]) -> bool:
    """Whether stage 1 trains with multi-resolution augmentation for this config."""
    return bool(cfg["method"] == "multires" or cfg["stage1"]["multires"])


def trunk_key(cfg: Config, resolution: int | None = None) -> str:
    """The cache key of the trunk a run trains in stage 1.

    For the ``separate`` method each resolution has its own trunk, keyed by the resolution.
    """
    base = config_hash(cfg, TRUNK_KEYS)
    tag = "multires" if multires_trunk(cfg) else "hr"
    suffix = f"-r{resolution}" if resolution is not None else ""
    return f"{cfg['model']['network']}-w{cfg['model']['width']}-{tag}{suffix}-{base}"


def dump_yaml(cfg: Mapping[str, Any]) -> str:
    """The config as YAML, keys in their natural order."""
    data = cfg.to_dict() if isinstance(cfg, Config) else dict(cfg)
    return yaml.safe_dump(data, sort_keys=False)
