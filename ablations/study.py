"""Study files: parse, validate and expand a YAML study into the trials it runs.

A study is either a ``sweep`` (a search over a space of btnet_core config values) or an
``ablation`` (a baseline config plus named one-factor variants). Every trial is run once per
seed of ``seeds``, so a variant or a sampled point pairs with the baseline seed by seed.
The schema is documented in ``docs/studies.md``; :func:`load_study` checks all of it before any
work starts: an unknown key, a wrong type, an empty range, or a value that btnet_core's own
validation refuses is one :class:`~btnet_core.errors.ConfigError` line naming the file, the
line, the key and what is allowed.

The study's data model and its expansion into trials are in :mod:`ablations.trials`; this
module re-exports them, so ``from ablations.study import Study, plan_trials`` works.

Example::

    study = load_study("search_spaces/demo.yaml")
    for spec in plan_trials(study):          # ablations, grid and random sweeps
        cfg = study.trial_config(spec)       # a validated btnet_core Config
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ablations.trials import (
    Param,
    Resources,
    Scheduler,
    Study,
    TrialSpec,
    contains_value,
    expand_grid_keys,
    grid_points,
    metric_is_loss_like,
    plan_trials,
    random_point,
    reported_metrics,
)
from btnet_core.config import (
    DEFAULTS,
    Config,
    config_hash,
    read_yaml,
    resolve_config,
    set_dotted,
)
from btnet_core.errors import ConfigError

KINDS = ("sweep", "ablation")
ALGORITHMS = ("grid", "random", "tpe", "nsga2")
SCHEDULERS = ("none", "asha")
MODES = ("max", "min")
# Distributions of a search-space entry; ``q`` (a step) may be added to uniform and randint.
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint")
TOP_KEYS = (
    "name",
    "kind",
    "description",
    "base_config",
    "base",
    "baseline",
    "variants",
    "space",
    "search",
    "samples",
    "scheduler",
    "metric",
    "mode",
    "seeds",
    "resources",
    "concurrency",
    "retries",
    "storage",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class _StudyLoader(yaml.SafeLoader):
    """YAML's safe loader, also reading ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# ---------------------------------------------------------------------------------------------
# Loading


def load_study(path: str | Path, storage: str | None = None) -> Study:
    """Read and validate a study file; raise one ConfigError line on the first problem.

    Args:
        path: The YAML file.
        storage: Overrides the file's ``storage`` key (the ``--storage`` option).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read study file ({exc})") from None
    return parse_study(text, str(path), base_dir=path.parent, storage=storage)


def parse_study(
    text: str, source: str = "<study>", base_dir: Path | None = None, storage: str | None = None
) -> Study:
    """Validate study YAML given as text; ``source`` names it in error messages."""
    lines = _Lines(source)
    try:
        node = yaml.compose(text, Loader=_StudyLoader)
        data = yaml.load(text, Loader=_StudyLoader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{where} YAML syntax error: {problem}") from None
    if node is not None:
        lines.index(node, ())
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: a study must be a mapping of keys (name, kind, ...), "
            f"not {type(data).__name__}"
        )
    return _Parser(data, lines, base_dir or Path("."), storage).parse()


class _Lines:
    """Line numbers of every key of the YAML document, by key path; also finds duplicates."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[tuple[str, ...], int] = {}

    def index(self, node: yaml.Node, prefix: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    raise ConfigError(
                        f"{self.source}:{key_node.start_mark.line + 1}: "
                        f"{'.'.join(prefix + (key,))}: duplicate key"
                    )
                seen.add(key)
                self.lines[prefix + (key,)] = key_node.start_mark.line + 1
                self.index(value_node, prefix + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines[prefix + (str(i),)] = item.start_mark.line + 1
                self.index(item, prefix + (str(i),))

    def at(self, *path: str) -> str:
        """``file:line`` of the deepest known key of ``path``."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return f"{self.source}:{self.lines[path[:n]]}"
        return self.source


_CORE_KEY = re.compile(r"unknown key '([^']+)'|^\s*([A-Za-z0-9_.]+):")


class _Parser:
    def __init__(
        self, data: dict[str, Any], lines: _Lines, base_dir: Path, storage: str | None
    ) -> None:
        self.data = data
        self.lines = lines
        self.base_dir = base_dir
        self.storage = storage

    # -- helpers ---------------------------------------------------------------------------
    def fail(self, path: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.lines.at(*path)}: {'.'.join(path)}: {message}")

    def core_error(
        self, exc: ConfigError, path: tuple[str, ...], label: str | None = None
    ) -> ConfigError:
        """Re-word a btnet_core error raised for the config at ``path`` with a line number.

        The core names the offending config key; the line is that key's when the study file
        spells it out, else the line of ``path``.
        """
        message = str(exc)
        message = message[2:] if message.startswith(": ") else message
        match = _CORE_KEY.search(message)
        key = next((g for g in match.groups() if g), None) if match else None
        where = self.lines.at(*path)
        if key:
            for cand in (path + (key,), path + tuple(key.split("."))):
                if cand in self.lines.lines:
                    where = self.lines.at(*cand)
                    break
        return ConfigError(f"{where}: {label or '.'.join(path)}: {message}")

    def mapping(
        self,
        value: Any,
        path: tuple[str, ...],
        allowed: Sequence[str] | None = None,
        what: str = "a mapping",
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be {what}, got {value!r}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"key {key!r} must be a string")
            if allowed is not None and key not in allowed:
                raise self.fail(path + (key,), f"unknown key; allowed: {', '.join(allowed)}")
        return value

    def integer(self, value: Any, path: tuple[str, ...], lo: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, got {value!r}")
        if lo is not None and value < lo:
            raise self.fail(path, f"must be >= {lo}, got {value}")
        return value

    def number(self, value: Any, path: tuple[str, ...]) -> float | int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"must be a number, got {value!r}")
        if not math.isfinite(value):
            raise self.fail(path, f"must be finite, got {value!r}")
        return value

    def string(
        self, value: Any, path: tuple[str, ...], allowed: Sequence[str] | None = None
    ) -> str:
        if not isinstance(value, str):
            hint = f"one of {', '.join(allowed)}" if allowed else "a string"
            raise self.fail(path, f"must be {hint}, got {value!r}")
        if allowed is not None and value not in allowed:
            raise self.fail(path, f"{value!r} is not allowed; allowed: {', '.join(allowed)}")
        return value

    # -- the study -------------------------------------------------------------------------
    def parse(self) -> Study:
        d = self.data
        self.mapping(d, (), TOP_KEYS)
        for key in ("name", "kind", "metric", "mode"):
            if key not in d:
                raise ConfigError(f"{self.lines.source}: {key}: is required")
        name = self.string(d["name"], ("name",))
        if not _NAME.match(name):
            raise self.fail(
                ("name",),
                f"{name!r} is not allowed; allowed: letters, digits, "
                "'_', '-', '.' (up to 80, not starting with '_.-')",
            )
        kind = self.string(d["kind"], ("kind",), KINDS)
        description = d.get("description", "")
        if not isinstance(description, str):
            raise self.fail(("description",), f"must be a string, got {description!r}")
        base = self.parse_base()
        seeds = self.parse_seeds(d.get("seeds", [base["seed"]]))
        metrics, modes = self.parse_objectives(d["metric"], d["mode"])
        resources = self.parse_resources(d.get("resources", {}))
        concurrency = d.get("concurrency")
        if concurrency is not None:
            concurrency = self.integer(concurrency, ("concurrency",), lo=1)
        retries = self.integer(d.get("retries", 0), ("retries",), lo=0)
        storage = self.storage
        if storage is None and d.get("storage") is not None:
            storage = self.string(d["storage"], ("storage",))
            if not storage.strip():
                raise self.fail(("storage",), "must be a path or a URI, got ''")
        common = dict(
            name=name,
            kind=kind,
            path=self.lines.source,
            base=base,
            metrics=metrics,
            modes=modes,
            seeds=seeds,
            description=description,
            resources=resources,
            concurrency=concurrency,
            retries=retries,
            storage=storage,
        )
        if kind == "ablation":
            for key in ("space", "search", "samples"):
                if key in d:
                    raise self.fail(
                        (key,),
                        "applies to kind sweep only; an ablation lists "
                        "'variants' (each run at every seed)",
                    )
            baseline = d.get("baseline", "baseline")
            baseline = self.string(baseline, ("baseline",))
            if not _NAME.match(baseline):
                raise self.fail(("baseline",), f"{baseline!r} is not a valid variant name")
            if "variants" not in d:
                raise ConfigError(f"{self.lines.source}: variants: is required for an ablation")
            variants = self.parse_variants(d["variants"], base, baseline)
            study = Study(**common, baseline=baseline, variants=variants)
        else:
            for key in ("variants", "baseline"):
                if key in d:
                    raise self.fail((key,), "applies to kind ablation only; a sweep has a 'space'")
            if "space" not in d:
                raise ConfigError(f"{self.lines.source}: space: is required for a sweep")
            space = self.parse_space(d["space"], base)
            algorithm, search_seed = self.parse_search(d.get("search", "grid"))
            samples = d.get("samples")
            if algorithm == "grid":
                if samples is not None:
                    raise self.fail(
                        ("samples",),
                        "does not apply to search grid (every point "
                        "of the grid runs); use random or tpe",
                    )
                for p in space:
                    if not p.enumerable:
                        raise self.fail(
                            ("space", p.key, p.kind),
                            "search grid needs values it can list: use choice, "
                            "grid, randint, or add q (a step) to uniform",
                        )
            else:
                if samples is None:
                    raise ConfigError(
                        f"{self.lines.source}: samples: is required for search "
                        f"{algorithm} (the number of points to try)"
                    )
                samples = self.integer(samples, ("samples",), lo=1)
                if algorithm in ("tpe", "nsga2"):
                    for p in space:
                        if p.kind == "grid":
                            raise self.fail(
                                ("space", p.key, "grid"),
                                f"grid values cannot be searched by {algorithm}; "
                                "use choice (or search grid/random)",
                            )
            study = Study(
                **common,
                space=space,
                algorithm=algorithm,
                search_seed=search_seed,
                samples=samples,
            )
        scheduler = self.parse_scheduler(d.get("scheduler", "none"), study)
        study = replace(study, scheduler=scheduler)
        self.check_plan(study)
        return study

    def parse_base(self) -> Config:
        d = self.data
        data: dict[str, Any] = {}
        if d.get("base_config") is not None:
            rel = self.string(d["base_config"], ("base_config",))
            cfg_path = Path(rel) if Path(rel).is_absolute() else self.base_dir / rel
            if not cfg_path.is_file():
                raise self.fail(("base_config",), f"no such config file: {cfg_path}")
            data = read_yaml(cfg_path)
        base = d.get("base") or {}
        self.mapping(base, ("base",), what="a mapping of btnet_core config keys")
        merged = copy.deepcopy(data)
        for key, value in base.items():
            try:
                if "." in key:
                    set_dotted(merged, key, copy.deepcopy(value), "")
                else:
                    merged[key] = _deep_merge(merged.get(key), value)
            except ConfigError as exc:
                raise self.core_error(exc, ("base",)) from None
        if isinstance(merged.get("data"), dict):
            merged["data"]["path"] = absolute_data_path(merged["data"].get("path"))
        try:
            return resolve_config(merged, "")
        except ConfigError as exc:
            raise self.core_error(exc, ("base",)) from None

    def parse_seeds(self, value: Any) -> tuple[int, ...]:
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, list) or not value:
            raise self.fail(
                ("seeds",), f"must be a non-empty list of integers >= 0, got {value!r}"
            )
        seeds = tuple(self.integer(s, ("seeds", str(i)), lo=0) for i, s in enumerate(value))
        if len(set(seeds)) != len(seeds):
            raise self.fail(("seeds",), f"lists a seed twice: {list(seeds)}")
        return seeds

    def parse_objectives(self, metric: Any, mode: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
        metrics = metric if isinstance(metric, list) else [metric]
        modes = mode if isinstance(mode, list) else [mode]
        if not metrics:
            raise self.fail(("metric",), "must name a metric, e.g. acc_112_7")
        for i, m in enumerate(metrics):
            where = ("metric", str(i)) if isinstance(metric, list) else ("metric",)
            if not isinstance(m, str) or not m:
                raise self.fail(where, f"must be a metric name such as acc_112_7, got {m!r}")
        if len(set(metrics)) != len(metrics):
            raise self.fail(("metric",), f"names a metric twice: {metrics}")
        if len(modes) != len(metrics):
            raise self.fail(
                ("mode",),
                f"needs one mode (max or min) per metric: {len(metrics)} "
                f"metric(s), {len(modes)} mode(s)",
            )
        for i, m in enumerate(modes):
            where = ("mode", str(i)) if isinstance(mode, list) else ("mode",)
            self.string(m, where, MODES)
        return tuple(metrics), tuple(modes)

    def parse_resources(self, value: Any) -> Resources:
        r = self.mapping(value, ("resources",), ("cpus", "gpus"))
        cpus = self.number(r.get("cpus", 1), ("resources", "cpus"))
        gpus = self.number(r.get("gpus", 0), ("resources", "gpus"))
        if cpus <= 0:
            raise self.fail(("resources", "cpus"), f"must be > 0, got {cpus}")
        if gpus < 0:
            raise self.fail(("resources", "gpus"), f"must be >= 0, got {gpus}")
        if gpus > 1 and gpus != int(gpus):
            raise self.fail(
                ("resources", "gpus"),
                f"a fraction must be below 1 (trials share "
                f"a GPU); more than one must be whole, "
                f"got {gpus}",
            )
        return Resources(cpus=float(cpus), gpus=float(gpus))

    def parse_search(self, value: Any) -> tuple[str, int]:
        if isinstance(value, str):
            value = {"algorithm": value}
        s = self.mapping(
            value,
            ("search",),
            ("algorithm", "seed"),
            what="an algorithm name or {algorithm, seed}",
        )
        algorithm = self.string(s.get("algorithm", "grid"), ("search", "algorithm"), ALGORITHMS)
        seed = self.integer(s.get("seed", 0), ("search", "seed"), lo=0)
        return algorithm, seed

    def parse_scheduler(self, value: Any, study: Study) -> Scheduler:
        if isinstance(value, str) or value is None:
            value = {"type": value or "none"}
        s = self.mapping(
            value,
            ("scheduler",),
            ("type", "grace_period", "reduction_factor", "max_t"),
            what="none, asha or {type: asha, grace_period, reduction_factor}",
        )
        kind = self.string(s.get("type", "none"), ("scheduler", "type"), SCHEDULERS)
        if kind == "none":
            extra = [k for k in s if k != "type"]
            if extra:
                raise self.fail(("scheduler", extra[0]), "only applies to scheduler asha")
            return Scheduler()
        if study.multi_objective:
            raise self.fail(
                ("scheduler",),
                "asha stops trials on one metric; a multi-objective study needs scheduler none",
            )
        grace = self.integer(s.get("grace_period", 1), ("scheduler", "grace_period"), lo=1)
        factor = self.number(s.get("reduction_factor", 2), ("scheduler", "reduction_factor"))
        if factor <= 1:
            raise self.fail(("scheduler", "reduction_factor"), f"must be > 1, got {factor}")
        max_t = s.get("max_t")
        if max_t is not None:
            max_t = self.integer(max_t, ("scheduler", "max_t"), lo=grace)
        return Scheduler(
            type="asha", grace_period=grace, reduction_factor=float(factor), max_t=max_t
        )

    def parse_variants(self, value: Any, base: Config, baseline: str) -> dict[str, dict]:
        variants = self.mapping(
            value, ("variants",), what="a mapping of variant name to config overrides"
        )
        if not variants:
            raise self.fail(("variants",), "must list at least one variant")
        out: dict[str, dict[str, Any]] = {}
        for name, overrides in variants.items():
            path = ("variants", name)
            if not _NAME.match(name):
                raise self.fail(path, "a variant name may hold letters, digits, '_', '-', '.'")
            if name == baseline:
                raise self.fail(
                    path,
                    "has the baseline's name; the baseline is the base "
                    "config (rename it or set baseline: to another name)",
                )
            self.mapping(
                overrides,
                path,
                what="a mapping of dotted config keys to values, e.g. {distill.feature: none}",
            )
            if not overrides:
                raise self.fail(path, "changes nothing; a variant sets at least one key")
            for key in overrides:
                self.check_key(key, path + (key,))
            try:
                cfg = base.replace(overrides, source="")
            except ConfigError as exc:
                raise self.core_error(exc, path) from None
            if config_hash(cfg) == config_hash(base):
                raise self.fail(
                    path,
                    "resolves to the baseline config; a variant must change at least one value",
                )
            out[name] = dict(overrides)
            if "data.path" in out[name]:
                out[name]["data.path"] = absolute_data_path(out[name]["data.path"])
        return out

    def check_key(self, key: str, path: tuple[str, ...]) -> None:
        if key == "seed":
            raise self.fail(path, "the seed is set per trial; list seeds under 'seeds:'")
        try:
            set_dotted(copy.deepcopy(DEFAULTS), key, None, "")
        except ConfigError as exc:
            message = str(exc).split(": ", 1)[-1]
            message = message.replace(f"unknown key '{key}'; ", "unknown config key; ")
            raise self.fail(path, message) from None
        section = _default_at(key)
        if isinstance(section, Mapping) and section:
            raise self.fail(
                path, f"is a section; name a key inside it, e.g. {key}.{next(iter(section))}"
            )

    def parse_space(self, value: Any, base: Config) -> tuple[Param, ...]:
        space = self.mapping(
            value, ("space",), what="a mapping of dotted config keys to distributions"
        )
        if not space:
            raise self.fail(("space",), "must hold at least one key to search")
        params: list[Param] = []
        for key, spec in space.items():
            path = ("space", key)
            self.check_key(key, path)
            params.append(self.parse_param(key, spec, path, params))
        for p in params:
            self.check_param_values(p, base, params)
        return tuple(params)

    def parse_param(
        self, key: str, spec: Any, path: tuple[str, ...], earlier: Sequence[Param]
    ) -> Param:
        allowed = (*DISTRIBUTIONS, "q", "when")
        self.mapping(
            spec,
            path,
            allowed,
            what="a distribution such as {choice: [a, b]} or {uniform: [lo, hi]}",
        )
        kinds = [k for k in spec if k in DISTRIBUTIONS]
        if len(kinds) != 1:
            raise self.fail(
                path, f"needs exactly one of {', '.join(DISTRIBUTIONS)}, got {kinds or 'none'}"
            )
        kind = kinds[0]
        raw = spec[kind]
        line = self.lines.lines.get(path)
        q = spec.get("q")
        when = self.parse_when(spec.get("when"), path, earlier)
        if kind in ("choice", "grid"):
            if q is not None:
                raise self.fail(path + ("q",), f"does not apply to {kind}")
            if not isinstance(raw, list) or not raw:
                raise self.fail(path + (kind,), "must be a non-empty list of values")
            seen = [json.dumps(v, sort_keys=True, default=str) for v in raw]
            if len(set(seen)) != len(seen):
                raise self.fail(path + (kind,), f"lists a value twice: {raw}")
            return Param(key, kind, values=tuple(raw), when=when, line=line)
        if not isinstance(raw, list) or len(raw) != 2:
            raise self.fail(path + (kind,), f"must be [low, high], got {raw!r}")
        if kind == "randint":
            low = self.integer(raw[0], path + (kind, "0"))
            high = self.integer(raw[1], path + (kind, "1"))
        else:
            low = self.number(raw[0], path + (kind, "0"))
            high = self.number(raw[1], path + (kind, "1"))
        if not low < high:
            raise self.fail(
                path + (kind,),
                f"empty range [{low}, {high}]: low must be below "
                "high (use a constant in base for a fixed value)",
            )
        if kind == "loguniform":
            if low <= 0:
                raise self.fail(path + (kind,), f"a log scale needs low > 0, got {low}")
            if q is not None:
                raise self.fail(
                    path + ("q",),
                    "cannot be combined with loguniform (a log "
                    "scale has no fixed step); use choice",
                )
        if q is not None:
            if kind == "randint":
                q = self.integer(q, path + ("q",), lo=1)
            else:
                q = self.number(q, path + ("q",))
                if q <= 0:
                    raise self.fail(path + ("q",), f"must be > 0, got {q}")
            steps = (high - low) / q
            if abs(steps - round(steps)) > 1e-6 or round(steps) < 1:
                raise self.fail(
                    path + ("q",),
                    f"the range [{low}, {high}] must be a whole number of steps of {q}",
                )
        return Param(key, kind, low=low, high=high, q=q, when=when, line=line)

    def parse_when(
        self, value: Any, path: tuple[str, ...], earlier: Sequence[Param]
    ) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        if value is None:
            return ()
        w = self.mapping(
            value, path + ("when",), what="a mapping of an earlier choice key to its value(s)"
        )
        by_key = {p.key: p for p in earlier}
        out = []
        for key, allowed in w.items():
            where = path + ("when", key)
            if key not in by_key:
                raise self.fail(
                    where,
                    "must name a choice or grid key listed earlier in the "
                    f"space; earlier keys: {', '.join(by_key) or 'none'}",
                )
            cond = by_key[key]
            if cond.kind not in ("choice", "grid"):
                raise self.fail(
                    where, f"conditions can only test a choice or grid key; {key} is {cond.kind}"
                )
            values = allowed if isinstance(allowed, list) else [allowed]
            for v in values:
                if not contains_value(cond.values, v):
                    raise self.fail(
                        where, f"{v!r} is not one of the values of {key}: {list(cond.values)}"
                    )
            out.append((key, tuple(values)))
        return tuple(out)

    def check_param_values(self, p: Param, base: Config, params: Sequence[Param]) -> None:
        """Resolve the base config with each value (or both bounds) of ``p``.

        The key's conditions are made true while doing so (a weight that exists only when its
        loss is on is checked with the loss on).
        """
        by_key = {q.key: q for q in params}
        context: dict[str, Any] = {}
        for key, allowed in p.when:
            context[key] = allowed[0]
            for k2, a2 in by_key[key].when:  # a condition's own conditions
                context.setdefault(k2, a2[0])
        if p.kind in ("choice", "grid"):
            candidates = list(p.values)
        elif p.enumerable:
            candidates = p.grid_values()
            candidates = candidates if len(candidates) <= 64 else [candidates[0], candidates[-1]]
        else:
            candidates = [p.low, p.high]
        for i, value in enumerate(candidates):
            try:
                base.replace({**context, p.key: value}, source="")
            except ConfigError as exc:
                path = ("space", p.key, p.kind)
                if p.kind in ("choice", "grid"):
                    path += (str(i),)
                raise self.core_error(exc, path, f"space.{p.key} = {value!r}") from None

    def check_plan(self, study: Study) -> None:
        """Resolve every planned trial's config and check the metrics each one reports."""
        if study.kind == "sweep" and study.algorithm in ("tpe", "nsga2"):
            # The points are only known while the search runs; every value of every key was
            # resolved above, and the metric is checked against the base and each choice.
            configs = [(None, study.base)]
            for p in study.space:
                if p.kind in ("choice", "grid"):
                    for v in p.values:
                        configs.append((None, _try_replace(study.base, {p.key: v})))
        else:
            configs = []
            for spec in plan_trials(study):
                try:
                    configs.append((spec, study.trial_config(spec)))
                except ConfigError as exc:
                    what = (
                        f"variant {spec.variant}"
                        if spec.variant
                        else (
                            "the point "
                            + ", ".join(f"{k}={v!r}" for k, v in spec.overrides.items())
                        )
                    )
                    msg = str(exc).split(": ", 2)[-1]
                    path = ("variants", spec.variant) if spec.variant else ("space",)
                    raise ConfigError(f"{self.lines.at(*path)}: {what}: {msg}") from None
        for spec, cfg in configs:
            if cfg is None:
                continue
            reported = reported_metrics(cfg)
            for i, m in enumerate(study.metrics):
                if m not in reported:
                    who = (
                        f"variant {spec.variant}"
                        if spec and spec.variant
                        else f"method {cfg['method']}"
                    )
                    path = ("metric", str(i)) if study.multi_objective else ("metric",)
                    raise self.fail(
                        path,
                        f"{m!r} is not reported by {who} with eval."
                        f"resolutions {cfg['eval']['resolutions']}; allowed: "
                        f"{_metric_hint(reported)}",
                    )
        if study.scheduler.type == "asha":
            m = study.metrics[0]
            if m.startswith(("macs_", "params_", "branch_params_", "storage_")):
                raise self.fail(
                    ("scheduler",),
                    f"asha needs a metric that changes during training; {m} is a fixed cost",
                )


# ---------------------------------------------------------------------------------------------
# Helpers


def _metric_hint(reported: set[str]) -> str:
    main = sorted(m for m in reported if m.startswith("acc_") and m.count("_") == 2)
    costs = sorted(m for m in reported if re.fullmatch(r"(macs|params)_\d+", m))
    return ", ".join(main + costs + ["loss", "acc_A_B_PATH ..."])


def _try_replace(base: Config, overrides: Mapping[str, Any]) -> Config | None:
    try:
        return base.replace(overrides, source="")
    except ConfigError:
        return None  # a value that only works with a condition; checked with it above


def absolute_data_path(path: Any) -> Any:
    """A relative local ``data.path`` made absolute against the directory the study is
    launched from (as ``btnet-lab train`` reads it): Ray runs trials in other working
    directories, where the relative path would name nothing. URIs and absolute paths, and
    anything that is not a string, are returned as they are."""
    if not isinstance(path, str) or not path or "://" in path or Path(path).is_absolute():
        return path
    return str((Path.cwd() / path).resolve())


def _deep_merge(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _deep_merge(old.get(k), v)
        return out
    return copy.deepcopy(new)


def _default_at(key: str) -> Any:
    node: Any = DEFAULTS
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


__all__ = [
    "Param",
    "Resources",
    "Scheduler",
    "Study",
    "TrialSpec",
    "expand_grid_keys",
    "grid_points",
    "load_study",
    "metric_is_loss_like",
    "parse_study",
    "plan_trials",
    "random_point",
    "reported_metrics",
]
