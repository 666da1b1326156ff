"""Item 1: what embedding a face costs at each resolution, through each path.

For an IResNet-50 (width 1.0) and a small CPU model (IResNet-18 at width 0.25), at 7, 14, 28
and 112 pixels, side by side in one run:

* **branch path**: the ``r x r`` face through its branch, implanted into the shared trunk;
* **upsample baseline**: the face resized to 112 (bilinear), then the trunk;
* **separate model**: one model per resolution, trained on faces resized from ``r`` to 112.
  Its architecture is the trunk's and its input is the resized face, so it costs exactly
  what the upsample baseline costs; it is timed anyway, on its own weights, as a check.

MACs and parameters come from :mod:`btnet_core.cost`; latency is the median of interleaved
runs of each path after a warm-up, under ``torch.inference_mode`` with a fixed thread count.
The table sets the latency ratio (branch / upsample) beside the MAC ratio, and where they
part by more than 15% it says why, with numbers measured in the same run: achieved GFLOP/s
of each path, the share of its time spent in convolutions and matrix products (torch
profiler), the share of its MACs in the narrow first stage, and the GFLOP/s of one 3x3
convolution of each stage at the trunk's map size against the same convolution at 7x7.

Run::

    .venv/bin/python -m bench.model_cost [--quick] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bench._common import (
    Timing,
    base_parser,
    device_timer,
    load_average,
    machine_info,
    machine_markdown,
    markdown_table,
    measure_interleaved,
    operator_time_shares,
    paired_ratio,
    resolve_device,
    run_cli,
    section_heading,
    setup_logging,
    si,
    write_section,
)
from btnet_core.cost import count_macs, path_costs, storage_cost
from btnet_core.degrade import upsample
from btnet_core.errors import ConfigError
from btnet_core.model import STAGE_BLOCKS, STAGE_SIZES, TRUNK_INPUT, BTNet, IResNet, channels

log = logging.getLogger(__name__)

RESOLUTIONS = (7, 14, 28, 112)
BRANCHES = (7, 14, 28)
#: A latency ratio this far (relative) from the MAC ratio gets an explanation line.
DEVIATION = 0.15


@dataclass(frozen=True)
class Case:
    """One network measured at some batch sizes, each with its number of timed repeats."""

    network: str
    width: float
    batches: tuple[tuple[int, int], ...]  # (batch size, repeats)

    @property
    def label(self) -> str:
        return f"{self.network} x{self.width:g}"


# r50 on two CPU cores takes about 0.3 s per face at 112, so its batches stay small and its
# repeats few; the small model gets more of both.
FULL = (
    Case("r50", 1.0, ((1, 7), (8, 5))),
    Case("r18", 0.25, ((1, 15), (32, 9))),
)
QUICK = (Case("r18", 0.0625, ((1, 2), (4, 2))),)


@dataclass(frozen=True)
class Row:
    """Measured cost of one resolution at one batch size."""

    case: Case
    batch: int
    resolution: int
    macs_branch: int
    macs_upsample: int
    branch: Timing
    upsample: Timing
    separate: Timing
    resize_s: float  # median of the resize to 112 alone (part of the upsample path)
    compute_branch: float  # share of the branch path's operator time in conv/linear layers
    compute_trunk: float  # the same for the trunk (the upsample path without its resize)
    stage1_branch: float  # share of the branch path's MACs in the stem and layer1
    stage1_trunk: float  # the same for the trunk

    @property
    def mac_ratio(self) -> float:
        return self.macs_branch / self.macs_upsample

    @property
    def latency_ratio(self) -> float:
        """Median of the per-round ratios branch / upsample (see :func:`paired_ratio`)."""
        return paired_ratio(self.branch, self.upsample).median

    @property
    def separate_ratio(self) -> float:
        """Median of the per-round ratios separate / upsample (1 up to noise)."""
        return paired_ratio(self.separate, self.upsample).median

    @property
    def deviation(self) -> float:
        """How far (relative) the latency ratio is from the MAC ratio."""
        return self.latency_ratio / self.mac_ratio - 1

    @property
    def ratio_quartiles(self) -> tuple[float, float]:
        """Quartiles of the per-round ratio branch / upsample: the ratio's noise."""
        r = paired_ratio(self.branch, self.upsample)
        return r.q1, r.q3

    @property
    def within_noise(self) -> bool:
        """Whether the MAC ratio lies inside the interquartile range of the paired ratios."""
        q1, q3 = self.ratio_quartiles
        return q1 <= self.mac_ratio <= q3

    def gflops(self, path: str) -> float:
        """Achieved GFLOP/s (2 FLOPs per MAC) of ``"branch"`` or ``"upsample"``."""
        macs = self.macs_branch if path == "branch" else self.macs_upsample
        return 2 * macs * self.batch / getattr(self, path).median / 1e9


@dataclass(frozen=True)
class ConvRate:
    """GFLOP/s of one c -> c 3x3 convolution of a stage at the trunk's map and at 7x7."""

    case: Case
    batch: int
    stage: int  # 1..4
    channels: int
    trunk_map: int
    at_trunk_map: float
    at_7: float


@dataclass(frozen=True)
class Params:
    """Parameter counts and layer counts of one network."""

    trunk: int
    branch_only: dict[int, int]
    btnet: int  # the shared trunk and every branch, stored once
    separate: int  # one trunk-sized model per resolution
    layers_branch7: int
    layers_trunk: int


# ---------------------------------------------------------------------------------------------
# Measuring


def count_layer_calls(model: nn.Module, fn: Callable[[], object]) -> int:
    """Conv and linear layers that run during ``fn()`` (each costs a fixed dispatch overhead)."""
    calls = 0

    def hook(*_args: object) -> None:
        nonlocal calls
        calls += 1

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.inference_mode():
            fn()
    finally:
        for h in handles:
            h.remove()
    return calls


def stage1_mac_share(model: BTNet, resolution: int) -> float:
    """Share of a path's MACs spent in its stem and first stage (the narrowest channels)."""
    x = torch.zeros(1, 3, resolution, resolution, device=next(model.parameters()).device)
    n1 = STAGE_BLOCKS[model.trunk.network][0]
    if resolution == TRUNK_INPUT:
        first = nn.ModuleList([model.trunk.stem, model.trunk.layer1])
        return count_macs(first, model.trunk, x) / count_macs(model, model.trunk, x)
    branch = model.branch(resolution)
    first = nn.ModuleList([branch.stem, *list(branch.blocks)[:n1]])
    path = count_macs(model, model.embed, x, "branch")
    return count_macs(first, model.embed, x, "branch") / path


def _faces(batch: int, r: int, device: torch.device, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(batch, 3, r, r, generator=gen) * 2 - 1).to(device)


def _compute_share(fn: Callable[[], object], device: torch.device) -> float:
    shares = operator_time_shares(fn, device)
    return shares["convolution"] + shares["matrix product"]


def measure_case(
    case: Case, device: torch.device, timer: Callable
) -> tuple[list[Row], list[ConvRate], Params]:
    """Latency rows, convolution rates and parameter counts of one network."""
    torch.manual_seed(0)
    model = BTNet(IResNet(case.network, case.width), BRANCHES).to(device).eval()
    # One model per low resolution, each with its own weights (the "separate" alternative).
    separate = {r: IResNet(case.network, case.width).to(device).eval() for r in BRANCHES}
    costs = {(c.resolution, c.path): c for c in path_costs(model, RESOLUTIONS)}
    stage1 = {r: stage1_mac_share(model, r) for r in RESOLUTIONS}
    gen = torch.Generator().manual_seed(1)
    rows: list[Row] = []
    convs: list[ConvRate] = []
    for batch, repeats in case.batches:
        faces = {r: _faces(batch, r, device, gen) for r in RESOLUTIONS}
        paths: dict[int, Callable[[], object]] = {
            TRUNK_INPUT: lambda hr=faces[TRUNK_INPUT]: model.trunk(hr)
        }
        fns: dict[str, Callable[[], object]] = {"trunk": paths[TRUNK_INPUT]}
        for r in BRANCHES:
            x = faces[r]
            paths[r] = lambda x=x: model.embed(x, "branch")
            fns[f"branch{r}"] = paths[r]
            fns[f"upsample{r}"] = lambda x=x: model.embed(x, "upsample")
            fns[f"separate{r}"] = lambda x=x, m=separate[r]: m(upsample(x, TRUNK_INPUT))
            fns[f"resize{r}"] = lambda x=x: upsample(x, TRUNK_INPUT)
        log.info("%s batch %d: timing %d paths x %d repeats", case.label, batch, len(fns), repeats)
        with torch.inference_mode():
            t = measure_interleaved(fns, repeats, warmup=1, timer=timer)
            compute = {r: _compute_share(fn, device) for r, fn in paths.items()}
        for r in RESOLUTIONS:
            if r == TRUNK_INPUT:  # every path is the trunk itself; nothing to resize
                timings, resize = (t["trunk"], t["trunk"], t["trunk"]), 0.0
            else:
                timings = (t[f"branch{r}"], t[f"upsample{r}"], t[f"separate{r}"])
                resize = t[f"resize{r}"].median
            rows.append(
                Row(
                    case,
                    batch,
                    r,
                    costs[(r, "branch")].macs,
                    costs[(r, "upsample")].macs,
                    *timings,
                    resize_s=resize,
                    compute_branch=compute[r],
                    compute_trunk=compute[TRUNK_INPUT],
                    stage1_branch=stage1[r],
                    stage1_trunk=stage1[TRUNK_INPUT],
                )
            )
        convs += conv_rates(case, batch, device, timer, max(3, repeats))
    storage = storage_cost(model, RESOLUTIONS)
    params = Params(
        trunk=sum(p.numel() for p in model.trunk.parameters()),
        branch_only={r: costs[(r, "branch")].branch_params for r in BRANCHES},
        btnet=storage.shared_trunk_and_branches,
        separate=storage.separate_models,
        layers_branch7=count_layer_calls(model, lambda: paths[min(BRANCHES)]()),
        layers_trunk=count_layer_calls(model, paths[TRUNK_INPUT]),
    )
    return rows, convs, params


def conv_rates(
    case: Case, batch: int, device: torch.device, timer: Callable, repeats: int
) -> list[ConvRate]:
    """GFLOP/s of one 3x3 convolution of each stage at the trunk's map size and at 7x7
    (where the 7-pixel branch runs every stage): how the map size changes a layer's rate."""
    out = []
    for stage, (c, size) in enumerate(zip(channels(case.width), STAGE_SIZES, strict=True)):
        conv = nn.Conv2d(c, c, 3, padding=1, bias=False).to(device).eval()
        gen = torch.Generator().manual_seed(stage)
        big = torch.randn(batch, c, size, size, generator=gen).to(device)
        small = torch.randn(batch, c, 7, 7, generator=gen).to(device)
        with torch.inference_mode():
            t = measure_interleaved(
                {
                    "big": lambda conv=conv, big=big: conv(big),
                    "small": lambda conv=conv, small=small: conv(small),
                },
                repeats,
                1,
                timer,
            )
        flops = 2 * batch * c * c * 9
        out.append(
            ConvRate(
                case,
                batch,
                stage + 1,
                c,
                size,
                flops * size * size / t["big"].median / 1e9,
                flops * 49 / t["small"].median / 1e9,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# Explaining


def _explain(row: Row, params: Params, convs: Sequence[ConvRate]) -> str:
    """Why this row's latency ratio parts from its MAC ratio, in this run's numbers."""
    mine = [c for c in convs if c.case == row.case and c.batch == row.batch]
    line = (
        f"- {row.case.label}, batch {row.batch}, {row.resolution}x{row.resolution}: latency "
        f"ratio {row.latency_ratio:.2f} against MAC ratio {row.mac_ratio:.2f} "
        f"({row.deviation:+.0%}); the branch path ran at {row.gflops('branch'):.1f} GFLOP/s, "
        f"the upsample path at {row.gflops('upsample'):.1f}. "
    )
    if row.deviation > 0:
        # The branch is slower than its MACs say: small maps, fixed per-layer costs.
        worst = min(mine, key=lambda c: c.at_7 / c.at_trunk_map)
        line += (
            f"The branch saves MACs, not layers ({params.layers_branch7} conv/linear layers on "
            f"the 7-pixel path, {params.layers_trunk} on the trunk), and each layer has a fixed "
            "dispatch and allocation cost (on CPU also a thread hand-off); its smaller maps make "
            f"smaller matrix products (e.g. layer{worst.stage} ({worst.channels} channels) ran at "
            f"{worst.at_7:.1f} GFLOP/s on 7x7 against {worst.at_trunk_map:.1f} on "
            f"{worst.trunk_map}x{worst.trunk_map}). Convolutions and matrix products took "
            f"{row.compute_branch:.0%} of the branch path's operator time, "
            f"{row.compute_trunk:.0%} of the trunk's."
        )
    else:
        # The branch is faster than its MACs say: are the trunk's MACs the slow ones?
        first = next(c for c in mine if c.stage == 1)
        last = next(c for c in mine if c.stage == 4)
        line += (
            f"The trunk does {row.stage1_trunk:.0%} of its MACs in its narrowest stage (stem "
            f"and layer1, {first.channels} channels, on 112x112 and 56x56 maps), the branch path "
            f"{row.stage1_branch:.0%}; at this batch layer1 ran at {first.at_trunk_map:.1f} "
            f"GFLOP/s on 56x56 and layer4 ({last.channels} channels), where the branch does "
            f"much of its work, at {last.at_7:.1f} on 7x7"
        )
        reasons = []
        if last.at_7 > 1.1 * first.at_trunk_map:
            reasons.append(
                "the trunk spends a large share of its MACs where convolutions run slowest, "
                "the branch hardly any"
            )
        if row.compute_branch > row.compute_trunk + 0.05:
            reasons.append(
                f"the trunk spent {1 - row.compute_trunk:.0%} of its operator time outside "
                f"convolutions and matrix products, the branch path {1 - row.compute_branch:.0%}"
                ": batch norm, PReLU and additions over the trunk's large early maps move memory "
                "and count no MACs"
            )
        if reasons:
            line += ": " + "; and ".join(reasons) + "."
        else:
            line += (
                f". Neither that nor the share of time outside convolutions (trunk "
                f"{1 - row.compute_trunk:.0%}, branch path {1 - row.compute_branch:.0%}) "
                "accounts for the difference."
            )
    q1, q3 = row.ratio_quartiles
    if row.within_noise:
        line += (
            f" The per-round ratio ranged {q1:.2f}-{q3:.2f} (IQR), which holds the MAC ratio: "
            "within this run's noise."
        )
    return line


def _summary(rows: Sequence[Row], label: str) -> str:
    """How the 7-pixel branch's ratio moves with the batch size."""
    mine = [r for r in rows if r.case.label == label and r.resolution == min(BRANCHES)]
    by_batch = ", ".join(f"{r.latency_ratio:.2f} at batch {r.batch}" for r in mine)
    first, last = mine[0].latency_ratio, mine[-1].latency_ratio
    if len(mine) < 2 or abs(last / first - 1) < 0.05:
        trend = "barely changes with the batch size"
    elif abs(last - mine[0].mac_ratio) < abs(first - mine[0].mac_ratio):
        trend = "comes closer to the MAC ratio as the batch grows (more rows per product)"
    else:
        trend = "moves away from the MAC ratio as the batch grows"
    return (
        f"- {label}: the 7-pixel branch's latency ratio is {by_batch} (MAC ratio "
        f"{mine[0].mac_ratio:.2f}); it {trend}."
    )


# ---------------------------------------------------------------------------------------------
# Report


def _iqr(row: Row) -> str:
    q1, q3 = row.ratio_quartiles
    return f"{q1:.2f}-{q3:.2f}"


def render(
    rows: Sequence[Row],
    convs: Sequence[ConvRate],
    params: dict[str, Params],
    info: dict[str, object],
    load_end: float,
    device: torch.device,
) -> str:
    """The Markdown section."""
    lat_table = markdown_table(
        [
            "network",
            "batch",
            "r",
            "MACs/face branch",
            "MACs/face upsample",
            "MAC ratio",
            "branch",
            "upsample",
            "separate",
            "latency ratio branch/upsample (paired IQR)",
            "separate/upsample",
            "GFLOP/s branch / upsample",
            "conv+linear share of time branch / trunk",
        ],
        [
            [
                row.case.label,
                row.batch,
                row.resolution,
                si(row.macs_branch, digits=3),
                si(row.macs_upsample, digits=3),
                f"{row.mac_ratio:.2f}",
                row.branch.ms(),
                row.upsample.ms(),
                row.separate.ms(),
                f"**{row.latency_ratio:.2f}** ({_iqr(row)})",
                f"{row.separate_ratio:.2f}",
                f"{row.gflops('branch'):.1f} / {row.gflops('upsample'):.1f}",
                f"{row.compute_branch:.0%} / {row.compute_trunk:.0%}",
            ]
            for row in rows
        ],
    )
    par_table = markdown_table(
        [
            "network",
            "trunk params",
            "branch-only params 7 / 14 / 28",
            "BTNet (trunk + 3 branches)",
            "4 separate models",
            "ratio",
        ],
        [
            [
                label,
                si(p.trunk, digits=2),
                " / ".join(si(p.branch_only[r], digits=2) for r in BRANCHES),
                si(p.btnet, digits=1),
                si(p.separate, digits=1),
                f"{p.btnet / p.separate:.2f}",
            ]
            for label, p in params.items()
        ],
    )
    conv_table = markdown_table(
        ["network", "batch", "stage", "channels", "trunk map", "GFLOP/s at trunk map", "at 7x7"],
        [
            [
                c.case.label,
                c.batch,
                f"layer{c.stage}",
                c.channels,
                f"{c.trunk_map}x{c.trunk_map}",
                f"{c.at_trunk_map:.3g}",
                f"{c.at_7:.3g}",
            ]
            for c in convs
        ],
    )
    deviating = [
        _explain(row, params[row.case.label], convs)
        for row in rows
        if row.resolution != TRUNK_INPUT and abs(row.deviation) > DEVIATION
    ]
    if not deviating:
        deviating = [f"Every latency ratio is within {DEVIATION:.0%} of its MAC ratio."]
    resize = max(
        (r.resize_s / r.upsample.median for r in rows if r.resolution != TRUNK_INPUT), default=0
    )
    summary = [_summary(rows, label) for label in params]
    summary.append(
        f"- The resize to 112 is at most {resize:.1%} of the upsample path's latency (it is not "
        "counted in MACs)."
    )
    return (
        section_heading("model_cost")
        + machine_markdown(info, load_end)
        + f"Device {device}; latency = median (IQR) of interleaved calls after one warm-up, "
        "whole batch, `torch.inference_mode`. MACs per face from `btnet_core.cost` (convs and "
        "linear layers). The separate per-resolution model is the trunk's architecture on the "
        "face resized to 112, so its MACs and parameters per model are the upsample path's; "
        "its latency column is measured on its own weights. Conv+linear share: torch profiler, "
        "one call.\n\n"
        + lat_table
        + "\nParameters (the branch path at r touches the branch plus the trunk after its "
        "insertion point; storage counts the shared trunk once):\n\n"
        + par_table
        + "\n### Where latency does not follow MACs\n\n"
        + "\n".join(deviating)
        + "\n\n"
        + "\n".join(summary)
        + "\n\nOne 3x3 convolution (c -> c channels) of each stage, at the map size the trunk "
        "runs it at and at the 7x7 the 7-pixel branch runs it at:\n\n" + conv_table
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the tables and write the ``model_cost`` section of BENCHMARKS.md."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    device = resolve_device(args.device)
    if args.threads < 0:
        raise ConfigError(f"--threads: {args.threads} is not allowed; allowed: 0 (auto) or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    timer = device_timer(device)
    info = machine_info()
    rows: list[Row] = []
    convs: list[ConvRate] = []
    params: dict[str, Params] = {}
    for case in QUICK if args.quick else FULL:
        case_rows, case_convs, params[case.label] = measure_case(case, device, timer)
        rows += case_rows
        convs += case_convs
    body = render(rows, convs, params, info, load_average(), device)
    print(body)
    write_section("model_cost", body, args.output)


if __name__ == "__main__":
    raise SystemExit(run_cli("bench.model_cost", main, None))
