"""The ``train`` and ``cost`` sub-commands of ``btnet-lab`` (and ``evaluate``, in
:mod:`btnet_core.evaluate_cli`). Nothing here imports Ray."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from btnet_core.errors import ConfigError

log = logging.getLogger(__name__)


def add_core_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one BTNet run (trunk, then branches)",
        description="Train one run: stage 1 (trunk) and stage 2 (branches), "
        "on the built-in synthetic faces unless the config names other data.",
    )
    p.add_argument("config", nargs="?", help="YAML config (default: the built-in defaults)")
    p.add_argument("--out", required=True, help="output directory of the run")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set stage2.lr=0.01 (repeatable)",
    )
    p.add_argument(
        "--stage",
        choices=("1", "2", "all"),
        default="all",
        help="run only stage 1 (the trunk) or only stage 2 (needs --trunk or a trunk.pt in --out)",
    )
    p.add_argument("--trunk", help="a trained trunk.pt to reuse for stage 2")
    p.set_defaults(handler=cmd_train)

    c = sub.add_parser(
        "cost",
        help="parameters and MACs of every path",
        description="Parameters and multiply-accumulates per image of the "
        "branch path and the upsample-to-112 baseline at each resolution.",
    )
    c.add_argument("--network", default="r50", help="r18, r34, r50, r100 or r200")
    c.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    c.add_argument("--embedding-size", type=int, default=512)
    c.add_argument("--resolutions", type=int, nargs="+", default=[7, 14, 28, 112])
    c.add_argument(
        "--insertion-depth", type=int, default=0, help="blocks past the paper's insertion point"
    )
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")
    c.set_defaults(handler=cmd_cost)

    from btnet_core.evaluate_cli import add_evaluate_parser

    add_evaluate_parser(sub)


def cmd_train(args: argparse.Namespace) -> int:
    from btnet_core import checkpoints
    from btnet_core.config import config_hash, dump_yaml, load_config, read_yaml, resolve_config
    from btnet_core.faces import split_faces
    from btnet_core.train import is_finished, train_branches, train_trunk, trunk_resolutions

    cfg = load_config(args.config, args.overrides)
    out = Path(args.out)
    if is_finished(out):
        raise ConfigError(f"{out}: already holds a finished run; choose another --out")
    saved = out / "config.yaml"
    if saved.exists():
        previous = resolve_config(read_yaml(saved), str(saved))
        if config_hash(previous) != config_hash(cfg):
            raise ConfigError(
                f"{out}: holds an unfinished run of a different config; resume it with that "
                f"config or choose another --out"
            )
        log.info("resuming the unfinished run in %s", out)
    # Load (and so check) the data before anything is written.
    split = split_faces(cfg)
    fresh = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        checkpoints.atomic_write_text(saved, dump_yaml(cfg))
        trunks = {}
        for r in trunk_resolutions(cfg):
            if args.stage == "2":
                src = Path(args.trunk) if args.trunk else out / "trunk.pt"
                if r is not None:
                    raise ConfigError(
                        "--stage 2 with method 'separate' needs every "
                        "per-resolution trunk; run all stages"
                    )
                if not src.is_file():
                    raise ConfigError(
                        f"{src}: no trunk to reuse; train stage 1 first or give --trunk"
                    )
                trunks[r] = src
            elif r is None and args.trunk:
                trunks[r] = Path(args.trunk)
            else:
                trunks[r] = train_trunk(cfg, out, r, split=split)
        if args.stage == "1":
            log.info("stage 1 done; trunk in %s", trunks[None])
            return 0
        metrics = train_branches(cfg, out, trunks, split=split)
    except BaseException:
        # Nothing half-written may look like a finished run: only final_metrics.json marks
        # one, and it is written last. A directory this command created and that holds no
        # checkpoint yet is removed so it cannot be mistaken for anything.
        if fresh and not any(out.glob("*.pt")) and not (out / "stage2").exists():
            shutil.rmtree(out, ignore_errors=True)
        raise
    accs = {
        k: round(v, 4)
        for k, v in metrics.items()
        if k.startswith("acc_") and not k.endswith("_std")
    }
    print(json.dumps({"out": str(out), **accs}, indent=1))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    from btnet_core.config import BRANCH_RESOLUTIONS, NETWORKS
    from btnet_core.cost import cost_table
    from btnet_core.model import TRUNK_INPUT

    if args.network not in NETWORKS:
        raise ConfigError(
            f"--network: {args.network!r} is not allowed; allowed: {', '.join(NETWORKS)}"
        )
    allowed = (*BRANCH_RESOLUTIONS, TRUNK_INPUT)
    for r in args.resolutions:
        if r not in allowed:
            raise ConfigError(f"--resolutions: {r} is not supported; allowed: {list(allowed)}")
    if args.width <= 0:
        raise ConfigError(f"--width: must be > 0, got {args.width}")
    costs, storage = cost_table(
        args.network,
        args.width,
        args.resolutions,
        args.embedding_size,
        insertion_depth=args.insertion_depth,
    )
    if args.json:
        rows = [c.to_dict() for c in costs]
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{args.network} width {args.width}, embedding {args.embedding_size}")
    print(
        f"{'res':>4} {'path':<9} {'params':>10} {'MACs':>10} {'vs 112':>7} "
        f"{'branch-only':>12}  insertion"
    )
    trunk_macs = next(c.macs for c in costs if c.resolution == TRUNK_INPUT or c.path == "upsample")
    for c in costs:
        print(
            f"{c.resolution:>4} {c.path:<9} {c.params / 1e6:>9.2f}M {c.macs / 1e9:>9.3f}G "
            f"{c.macs / trunk_macs:>6.0%} {c.branch_params / 1e6:>11.2f}M  "
            f"{c.insertion_point or '-'}"
        )
    print(
        f"storage for {list(storage.resolutions)}: shared trunk + branches "
        f"{storage.shared_trunk_and_branches / 1e6:.1f}M params, separate models "
        f"{storage.separate_models / 1e6:.1f}M ({storage.ratio:.0%})"
    )
    return 0
