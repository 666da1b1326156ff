"""Item 2: training throughput and achieved FLOP/s against the machine's measured matmul peak.

Three measurements, in one run:

1. **Peak**: the median rate of a square matrix product (2048 on CPU, 8192 on CUDA) in fp32,
   and on CUDA also TF32, bf16 and fp16: before the training steps, round-robin with them,
   and after the trainer runs. The highest of these medians is the peak (on a shared machine
   that makes the utilisation a conservative figure); the step rows also give the median of
   per-round ratios to the product timed in the same round, which load from other jobs
   affects much less.
2. **Step**: one training iteration of each stage, built from ``btnet_core`` as
   :mod:`btnet_core.train` builds it (trunk, margin head, SGD, gradient clipping, AMP and a
   grad scaler on CUDA; stage 2: frozen trunk as teacher, every branch on its degraded copy,
   distillation and the backward-compatible loss through the trunk's classifier), on one
   batch already on the device. Timed with CUDA events on a GPU and the host clock on a CPU.
   Its FLOPs are *counted* for one iteration with ``torch.utils.flop_counter.FlopCounterMode``
   (convolutions and matrix products, forward and backward, as executed).
3. **Trainer**: :func:`btnet_core.train.train_trunk` and :func:`~btnet_core.train.
   train_branches` themselves on a small synthetic data set; images/s and the trainer's own
   achieved FLOP/s are read back from ``metrics.jsonl`` (one line per epoch; evaluation time
   excluded by the trainer; the first epoch is dropped as warm-up). The trainer's FLOP figure
   is an estimate: 6 x forward MACs per image (stage 2: 2 x trunk MACs for the teacher + 6 x
   the MACs of every branch path).

Utilisation = achieved FLOP/s / peak, against fp32 on CPU and against the precision the
trainer computes in on CUDA (fp16 under AMP).

Run::

    .venv/bin/python -m bench.throughput [--quick] [--device auto|cpu|cuda] \\
        [--network r18 --width 0.25 --batch 32]

The CUDA path (events, AMP, the TF32/bf16/fp16 peaks, device-time profiling) has not been run:
the development machine has no GPU. On CUDA the trainer rows also run with the deterministic
cuDNN kernels ``btnet_core.train.seed_everything`` selects, while the bare steps run with
torch's defaults; part of a step-vs-trainer gap on a GPU can be that choice, not the loop.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from bench._common import (
    Timing,
    base_parser,
    device_timer,
    load_average,
    machine_info,
    machine_markdown,
    markdown_table,
    measure,
    measure_interleaved,
    median,
    operator_time_shares,
    quartiles,
    resolve_device,
    run_cli,
    section_heading,
    setup_logging,
    si,
    write_section,
)
from btnet_core.config import Config, resolve_config
from btnet_core.cost import trunk_macs
from btnet_core.degrade import degrade
from btnet_core.evaluate import degradation_of
from btnet_core.faces import Split, split_faces
from btnet_core.heads import build_head
from btnet_core.losses import distillation_loss
from btnet_core.model import BTNet, build_btnet, build_trunk, channels
from btnet_core.train import (
    freeze_trunk,
    hr_batch,
    set_train_mode,
    train_branches,
    train_trunk,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setup:
    """What is trained and how long each measurement runs."""

    network: str
    width: float
    batch: int
    identities: int  # synthetic identities (held_out of them are for evaluation only)
    images_per_identity: int
    held_out: int
    epochs: int  # per stage, for the trainer runs (the first is dropped as warm-up)
    step_repeats: int
    gemm_n: int
    gemm_repeats: int


# Two shared CPU cores: a small model, a few hundred faces, three epochs per stage.
CPU_FULL = Setup("r18", 0.25, 32, 40, 8, 8, 3, 7, 2048, 9)
# A GPU gets the paper's network and a batch that fills it (untested: no GPU here).
CUDA_FULL = Setup("r50", 1.0, 128, 80, 20, 16, 3, 20, 8192, 20)
QUICK = Setup("r18", 0.0625, 8, 8, 4, 4, 2, 2, 256, 2)


@dataclass(frozen=True)
class Peak:
    """Measured matrix-product rate in one precision."""

    precision: str
    n: int
    before: Timing
    after: Timing

    during: tuple[Timing, ...] = ()  # round-robin with the steps (reference precision only)

    @property
    def flops(self) -> float:
        """FLOP/s of the fastest median: the machine's peak as measured in this run."""
        fastest = min(t.median for t in (self.before, self.after, *self.during))
        return 2 * self.n**3 / fastest


@dataclass(frozen=True)
class StageResult:
    """Throughput of one stage, measured as a bare step and through the trainer."""

    stage: str
    step: Timing
    gemm: Timing  # the peak's matrix product, timed in the same rounds as the step
    gemm_flops: float  # FLOPs of that product
    batch: int
    counted_flops_per_image: float  # FlopCounterMode, one iteration / batch
    conv_flops_per_image: float  # the convolutions' part of it
    trainer_estimate_per_image: float  # the trainer's 6 x MACs figure
    trainer_ips: float  # median over epochs after the first
    trainer_flops: float  # the trainer's own achieved FLOP/s (its estimate)
    trainer_epochs: int
    time_shares: dict[str, float]

    @property
    def step_ips(self) -> float:
        return self.batch / self.step.median

    def step_utilisation(self) -> tuple[float, float, float]:
        """Median and quartiles of the per-round utilisation: the step's counted FLOP/s over
        the matrix product's FLOP/s of the same round (a burst of load slows both)."""
        flops = self.counted_flops_per_image * self.batch
        per_round = [
            (flops / t) / (self.gemm_flops / g)
            for t, g in zip(self.step.samples, self.gemm.samples, strict=True)
        ]
        q1, q3 = quartiles(per_round)
        return median(per_round), q1, q3


# ---------------------------------------------------------------------------------------------
# 1. Peak


def matmul_peaks(device: torch.device, n: int, repeats: int) -> dict[str, Timing]:
    """Median time of an ``n x n`` matrix product per precision (fp32 only on CPU)."""
    timer = device_timer(device)
    precisions: list[tuple[str, torch.dtype, bool]] = [("fp32", torch.float32, False)]
    if device.type == "cuda":
        precisions += [
            ("tf32", torch.float32, True),
            ("bf16", torch.bfloat16, False),
            ("fp16", torch.float16, False),
        ]
    out: dict[str, Timing] = {}
    allow = torch.backends.cuda.matmul.allow_tf32
    gen = torch.Generator().manual_seed(0)
    try:
        for name, dtype, tf32 in precisions:
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
            out[name] = measure(lambda a=a, b=b: a @ b, repeats, warmup=2, timer=timer)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = allow
    return out


def gemm(device: torch.device, n: int, precision: str) -> Callable[[], object]:
    """One ``n x n`` matrix product in ``precision`` (fp32, tf32, bf16, fp16) as a callable,
    to be timed round-robin with the training steps."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)

    def run() -> object:
        allow = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        try:
            return a @ b
        finally:
            torch.backends.cuda.matmul.allow_tf32 = allow

    return run


def reference_precision(cfg: Config, device: torch.device) -> str:
    """The precision training computes in, whose peak the utilisation is measured against."""
    if device.type != "cuda":
        return "fp32"
    if cfg["stage1"]["amp"]:
        return "fp16"
    # Convolutions run in TF32 unless cudnn is told otherwise (torch's default).
    return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


# ---------------------------------------------------------------------------------------------
# 2. Steps


def make_config(setup: Setup, device: torch.device) -> Config:
    """A run config for the synthetic faces, as ``btnet-lab train`` would resolve it."""
    stage = {"epochs": setup.epochs, "batch_size": setup.batch}
    return resolve_config(
        {
            "device": str(device),
            "model": {"network": setup.network, "width": setup.width},
            "data": {
                "identities": setup.identities,
                "images_per_identity": setup.images_per_identity,
                "held_out": setup.held_out,
            },
            "stage1": stage,
            "stage2": stage,
            # Evaluation is not part of the throughput; keep it as small as the config allows.
            "eval": {"pairs": 20, "folds": 2, "flip": False},
        },
        source="bench.throughput",
    )


def _head(cfg: Config, num_classes: int) -> nn.Module:
    h = cfg["head"]
    params = {k: h[k] for k in ("scale", "margin", "h", "t_alpha") if h[k] is not None}
    return build_head(h["type"], cfg["model"]["embedding_size"], num_classes, **params)


def _batch(cfg: Config, split: Split, device: torch.device) -> tuple[Tensor, Tensor]:
    n = cfg["stage1"]["batch_size"]
    pick = torch.arange(n) % len(split.train_index)
    images = split.source.fetch(split.train_index[pick.numpy()])
    x = hr_batch(images, torch.Generator().manual_seed(0), device)
    y = torch.as_tensor(split.train_labels[pick.numpy()], device=device)
    return x, y


def _optimise(
    cfg: Config, stage: str, params: list[nn.Parameter], device: torch.device
) -> Callable[[Callable[[], Tensor]], float]:
    """The trainer's phase 3 (zero, scaled backward, unscale, clip, step, update)."""
    s = cfg[stage]
    optimizer = torch.optim.SGD(
        params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"]
    )
    use_amp = s["amp"] and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def run(loss_fn: Callable[[], Tensor]) -> float:
        if use_amp:
            with torch.autocast(device_type="cuda", dtype=torch.float16):
                loss = loss_fn()
        else:
            loss = loss_fn()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if s["grad_clip"] > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, s["grad_clip"])
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())  # the trainer reads the loss every iteration, too

    return run


def stage1_step(cfg: Config, split: Split, device: torch.device) -> Callable[[], float]:
    """One stage-1 iteration (trunk + margin head) on a fixed batch."""
    torch.manual_seed(cfg["seed"])
    trunk = build_trunk(cfg["model"]).to(device).train()
    head = _head(cfg, split.num_classes).to(device).train()
    params = [p for m in (trunk, head) for p in m.parameters() if p.requires_grad]
    run = _optimise(cfg, "stage1", params, device)
    x, y = _batch(cfg, split, device)
    return lambda: run(lambda: head(trunk(x), y))


def stage2_step(cfg: Config, split: Split, device: torch.device) -> Callable[[], float]:
    """One stage-2 iteration: every branch on its degraded copy of the batch, the frozen trunk
    as teacher, distillation plus the backward-compatible loss (``compat: bct``).

    This mirrors the loss of :func:`btnet_core.train.train_branches` (default config: BCT,
    trunk BN frozen); the trainer row of the table runs the real function as a cross-check.
    """
    torch.manual_seed(cfg["seed"])
    model: BTNet = build_btnet(cfg["model"]).to(device)
    trunk_head = _head(cfg, split.num_classes).to(device).eval()
    for p in trunk_head.parameters():
        p.requires_grad = False
    freeze_trunk(model, cfg["model"]["trunk_bn"])
    set_train_mode(model, cfg["model"]["trunk_bn"])
    params = [p for p in model.parameters() if p.requires_grad]
    run = _optimise(cfg, "stage2", params, device)
    x, y = _batch(cfg, split, device)
    spec = degradation_of(cfg)
    points = model.insertion_points
    gen = torch.Generator().manual_seed(1)

    def loss_fn() -> Tensor:
        with torch.no_grad():
            maps, teacher = model.trunk.features_at(x, list(points.values()))
        total = x.new_zeros(())
        for r in model.resolutions:
            implant, emb = model.embed_branch(degrade(x, r, spec, generator=gen), r)
            distill, _ = distillation_loss(implant, maps[points[r]], emb, teacher, cfg["distill"])
            total = total + trunk_head(emb, y) + distill
        return total

    return lambda: run(loss_fn)


def counted_flops(step: Callable[[], object]) -> tuple[float, float]:
    """FLOPs of one call as executed (forward and backward convolutions and matrix products),
    and the part of them in convolutions."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    ops = counter.get_flop_counts().get("Global", {})
    conv = sum(n for op, n in ops.items() if "conv" in str(op))
    return float(counter.get_total_flops()), float(conv)


# ---------------------------------------------------------------------------------------------
# 3. The trainer itself


def trainer_rates(cfg: Config, split: Split, out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Run both stages through btnet_core.train; the metrics lines of each stage."""
    trunk_path = train_trunk(cfg, out_dir, split=split)
    train_branches(cfg, out_dir, {None: trunk_path}, split=split)
    lines = [json.loads(x) for x in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "stage1": [m for m in lines if m["stage"] == "stage1"],
        "stage2": [m for m in lines if m["stage"] == "stage2"],
    }


def _trainer_estimate(cfg: Config, stage: str) -> float:
    """The trainer's FLOPs per image (see btnet_core.train: 6 x MACs, teacher 2 x MACs)."""
    from btnet_core.cost import TRAIN_FLOPS_PER_MAC, path_costs

    model = build_btnet(cfg["model"])
    trunk = trunk_macs(model.trunk)
    if stage == "stage1":
        return TRAIN_FLOPS_PER_MAC * trunk
    costs = path_costs(model, model.resolutions)
    branch = sum(c.macs for c in costs if c.path == "branch")
    return 2 * trunk + TRAIN_FLOPS_PER_MAC * branch


# ---------------------------------------------------------------------------------------------
# Report


def render(
    setup: Setup,
    device: torch.device,
    peaks: dict[str, Peak],
    reference: str,
    results: Sequence[StageResult],
    info: dict[str, Any],
    load_end: float,
) -> str:
    """The Markdown section."""
    during = {r.stage: r.gemm for r in results}
    peak_rows = []
    for p in peaks.values():
        cells = [p.precision, f"{p.n}^3", _rate(p.n, p.before)]
        for t in during.values():
            cells.append(_rate(p.n, t) if p.precision == reference else "-")
        cells.append(_rate(p.n, p.after))
        bold = p.precision == reference
        cells.append(f"**{p.flops / 1e9:.1f}**" if bold else f"{p.flops / 1e9:.1f}")
        peak_rows.append(cells)
    peak_head = ["precision", "size", "before", *(f"during {s} steps" for s in during)]
    peak_head += ["after", "peak (highest median)"]
    peak = peaks[reference].flops
    rows = []
    for r in results:
        counted = r.counted_flops_per_image
        util, q1, q3 = r.step_utilisation()
        rows.append(
            [
                r.stage,
                "step (model + optimiser)",
                f"{r.step_ips:.1f}",
                si(counted, "FLOP", 2),
                f"{r.step_ips * counted / 1e9:.2f}",
                f"**{r.step_ips * counted / peak:.1%}**",
                f"{util:.1%} (IQR {q1:.1%}-{q3:.1%})",
                "",
            ]
        )
        rows.append(
            [
                r.stage,
                f"trainer, {r.trainer_epochs} epoch(s) after warm-up",
                f"{r.trainer_ips:.1f}",
                si(counted, "FLOP", 2),
                f"{r.trainer_ips * counted / 1e9:.2f}",
                f"**{r.trainer_ips * counted / peak:.1%}**",
                "-",
                f"{r.trainer_flops / 1e9:.2f} ({r.trainer_flops / peak:.1%})",
            ]
        )
    table = markdown_table(
        [
            "stage",
            "measured",
            "images/s",
            "FLOP/image (counted)",
            "achieved GFLOP/s",
            f"utilisation vs {reference} peak",
            "utilisation vs the same round's product (IQR)",
            "trainer's own GFLOP/s estimate (util.)",
        ],
        rows,
    )
    share_rows = [[r.stage] + [f"{v:.0%}" for v in r.time_shares.values()] for r in results]
    shares = markdown_table(["stage", *results[0].time_shares], share_rows)
    notes = []
    for r in results:
        est = r.trainer_estimate_per_image / r.counted_flops_per_image
        kept = r.trainer_ips / r.step_ips
        line = (
            f"- {r.stage}: the trainer's FLOP estimate is "
            f"{si(r.trainer_estimate_per_image, 'FLOP')} per image, {est:.2f} x the counted "
            f"{si(r.counted_flops_per_image, 'FLOP')}. The trainer ran at {kept:.0%} of the "
            "bare step's images/s"
        )
        if kept < 0.95:
            line += (
                "; the difference is what the loop does around the step: fetching, flipping "
                "and moving each batch, reading the loss, bookkeeping (plus the shared cores' "
                "noise)."
            )
        else:
            line += (
                ": the loop around the step (fetching, flipping and moving each batch, "
                "bookkeeping) costs less than the run-to-run noise of the shared cores."
            )
        notes.append(line)
    by_stage = {r.stage: r for r in results}
    if "stage 1" in by_stage and "stage 2" in by_stage:
        e1, e2 = (
            by_stage[s].trainer_estimate_per_image / by_stage[s].counted_flops_per_image
            for s in ("stage 1", "stage 2")
        )
        if e2 > e1 * 1.05:
            notes.append(
                f"- Stage 2's estimate is further from the count ({e2:.2f} x against stage 1's "
                f"{e1:.2f} x) because it charges 6 FLOPs per MAC for the whole branch path, "
                "while the frozen trunk after each insertion point needs input gradients only "
                "(about 4 FLOPs per MAC: no weight gradients)."
            )
    widths = ", ".join(str(c) for c in channels(setup.width))
    for r in results:
        conv_share = r.time_shares["convolution"]
        conv_rate = r.conv_flops_per_image * r.batch / (conv_share * r.step.median)
        compute = conv_share + r.time_shares["matrix product"]
        line = (
            f"- {r.stage}, what keeps utilisation below 100%: convolutions and matrix products "
            f"took {compute:.0%} of the step's operator time (torch profiler); the rest (batch "
            "norm, PReLU, the optimiser's elementwise updates, degradation, copies) moves memory "
            "and does no counted FLOPs. The convolutions themselves ran at about "
            f"{conv_rate / 1e9:.1f} GFLOP/s ({conv_rate / peak:.0%} of the peak)"
        )
        if conv_rate < 0.5 * peak:
            line += (
                f": at width {setup.width:g} (stage widths {widths}) they are much smaller "
                f"matrix products than the {setup.gemm_n}^3 one the peak is measured on."
            )
        else:
            line += "."
        notes.append(line)
    return (
        section_heading("throughput")
        + machine_markdown(info, load_end)
        + f"Device {device}. Model {setup.network} width {setup.width:g}, batch {setup.batch}, "
        f"synthetic faces ({setup.identities} identities x {setup.images_per_identity}, "
        f"{setup.held_out} held out); stage 2 trains branches 7, 14 and 28 on each image. "
        "Step: median (IQR) of "
        f"{results[0].step.n} iterations after one warm-up"
        + (", CUDA events" if device.type == "cuda" else ", host clock")
        + ". Trainer: `train_trunk` / `train_branches`, images/s from `metrics.jsonl` "
        "(median over epochs after the first). Images of stage 2 are 112x112 images, each "
        "trained through every branch.\n\n"
        "Matrix-product rate, GFLOP/s, median (IQR): before the steps, round-robin with each "
        "stage's steps, and after the trainer runs; the highest median is the peak (bold). The "
        "step rows also set each step against the product timed in the same round: load from "
        "other jobs slows both, though not necessarily alike, so on a quiet machine the two "
        "utilisation columns agree and on a shared one they differ by how unevenly the load "
        "fell. The trainer cannot be interleaved.\n\n"
        + markdown_table(peak_head, peak_rows)
        + "\n"
        + table
        + "\nShare of one step's operator time:\n\n"
        + shares
        + "\n"
        + "\n".join(notes)
        + "\n"
    )


def _rate(n: int, t: Timing) -> str:
    """GFLOP/s of an ``n^3`` product: median (IQR)."""
    rate = 2 * n**3 / 1e9
    return f"{rate / t.median:.1f} (IQR {rate / t.q3:.1f}-{rate / t.q1:.1f})"


def main(argv: Sequence[str] | None = None) -> None:
    """Measure, print the tables and write the ``throughput`` section of BENCHMARKS.md."""
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    parser.add_argument("--network", default=None, help="r18, r34, r50, ... (default per device)")
    parser.add_argument("--width", type=float, default=None, help="width multiplier")
    parser.add_argument("--batch", type=int, default=None, help="batch size of both stages")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    device = resolve_device(args.device)
    setup = QUICK if args.quick else (CUDA_FULL if device.type == "cuda" else CPU_FULL)
    setup = replace(
        setup,
        network=args.network or setup.network,
        width=args.width if args.width is not None else setup.width,
        batch=args.batch if args.batch is not None else setup.batch,
    )
    cfg = make_config(setup, device)  # checks network, width and batch like any config
    info = machine_info()
    timer = device_timer(device)

    log.info("matmul peak (%d^3, %s)", setup.gemm_n, device)
    before = matmul_peaks(device, setup.gemm_n, setup.gemm_repeats)
    reference = reference_precision(cfg, device)
    product = gemm(device, setup.gemm_n, reference)
    split = split_faces(cfg)
    results = []
    for stage in ("stage1", "stage2"):
        step = (
            stage1_step(cfg, split, device)
            if stage == "stage1"
            else stage2_step(cfg, split, device)
        )
        log.info("%s: timing %d steps of batch %d", stage, setup.step_repeats, setup.batch)
        t = measure_interleaved(
            {"step": step, "gemm": product}, setup.step_repeats, warmup=1, timer=timer
        )
        flops, conv = counted_flops(step)
        shares = operator_time_shares(step, device)
        results.append((stage, t["step"], t["gemm"], flops, conv, shares))
    log.info("trainer: both stages, %d epochs each", setup.epochs)
    with tempfile.TemporaryDirectory(prefix="btnet-bench-throughput-") as tmp:
        lines = trainer_rates(cfg, split, Path(tmp))
    after = matmul_peaks(device, setup.gemm_n, setup.gemm_repeats)
    during = tuple(gemm_timing for _, _, gemm_timing, *_ in results)
    peaks = {
        k: Peak(k, setup.gemm_n, before[k], after[k], during if k == reference else ())
        for k in before
    }
    out = []
    for stage, timing, gemm_timing, flops, conv, shares in results:
        epochs = lines[stage][1:] or lines[stage]  # the first epoch is warm-up
        out.append(
            StageResult(
                stage.replace("stage", "stage "),
                timing,
                gemm_timing,
                2.0 * setup.gemm_n**3,
                setup.batch,
                flops / setup.batch,
                conv / setup.batch,
                _trainer_estimate(cfg, stage),
                median([m["images_per_s"] for m in epochs]),
                median([m["achieved_flops"] for m in epochs]),
                len(epochs),
                shares,
            )
        )
    body = render(setup, device, peaks, reference, out, info, load_average())
    print(body)
    write_section("throughput", body, args.output)


if __name__ == "__main__":
    raise SystemExit(run_cli("bench.throughput", main, None))
