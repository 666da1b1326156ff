"""Two-stage BTNet training: stage 1 trains the trunk, stage 2 the branches with the trunk frozen.

Both stages run the same loop, whose phases read top to bottom in :func:`_run_stage`:
learning rate (warm-up, polynomial decay), forward and loss, backward with gradient clipping,
optimiser step, and at every ``eval.every`` epochs: evaluation, a checkpoint, a metrics line
and the caller's callback (Ray Tune reports there).

Stage 1 writes ``trunk.pt`` atomically as its very last step, so the file's presence means
the trunk is finished; an interrupted stage 1 resumes from ``stage1_state.pt``. Stage 2 keeps
the trunk's weights and BatchNorm statistics bit-for-bit unchanged (unless
``model.trunk_bn: trainable`` reproduces the authors' behaviour) and writes one
``branch_{r}.pt`` per branch holding only that branch's parameters.

Example::

    cfg = load_config("configs/synthetic_tiny.yaml")
    metrics = train(cfg, Path("runs/tiny"))
    metrics["acc_112_7"], metrics["acc_112_7_upsample"]
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from btnet_core import checkpoints
from btnet_core.config import Config, dump_yaml, multires_trunk
from btnet_core.cost import TRAIN_FLOPS_PER_MAC, path_costs, storage_cost
from btnet_core.data import verification_pairs
from btnet_core.degrade import degrade, to_tensor
from btnet_core.degrade import upsample as upsample_to
from btnet_core.errors import DivergedError
from btnet_core.evaluate import (
    Evaluator,
    OpenSetProbes,
    PairSet,
    degradation_of,
    primary_metrics,
)
from btnet_core.faces import Split, split_faces
from btnet_core.heads import MarginHead, build_head
from btnet_core.losses import alignment_loss, check_finite, distillation_loss
from btnet_core.model import TRUNK_INPUT, BTNet, IResNet, build_btnet, build_trunk

log = logging.getLogger(__name__)

StageCallback = Callable[[dict[str, Any]], None]
BranchCallback = Callable[[dict[str, Any], Path], None]

TRUNK_FILE = "trunk.pt"


def trunk_file(resolution: int | None = None) -> str:
    """File name of a finished trunk (per resolution for the ``separate`` method)."""
    return TRUNK_FILE if resolution is None else f"trunk_r{resolution}.pt"


def trunk_resolutions(cfg: Config) -> list[int | None]:
    """The trunks a run needs: one, or one per resolution for ``separate`` models."""
    if cfg["method"] == "separate":
        return [r for r in cfg["eval"]["resolutions"] if r != TRUNK_INPUT] + [None]
    return [None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


# ---------------------------------------------------------------------------------------------
# Shared machinery of both stages


@dataclass
class Schedule:
    """Per-iteration learning rate: linear warm-up, then polynomial decay to zero."""

    base_lr: float
    total: int
    warmup: int
    power: float

    def __call__(self, it: int) -> float:
        if self.warmup and it < self.warmup:
            return self.base_lr * (it + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (it - self.warmup) / span)
        return self.base_lr * (1.0 - progress) ** self.power


def batches(
    split: Split, batch_size: int, seed: int, epoch: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled training batches (uint8 NHWC, labels) for one epoch; the order depends only on
    (seed, epoch), so a resumed run sees the same batches. The last partial batch is dropped
    (BatchNorm needs more than one sample)."""
    order = np.random.default_rng([seed, epoch, 1]).permutation(len(split.train_index))
    n = len(order) // batch_size * batch_size
    if n == 0:
        n = len(order)  # a tiny set: one batch of everything
        batch_size = len(order)
    for start in range(0, n, batch_size):
        pick = order[start : start + batch_size]
        yield split.source.fetch(split.train_index[pick]), split.train_labels[pick]


def hr_batch(images: np.ndarray, gen: torch.Generator, device: torch.device) -> Tensor:
    """A training batch at 112 in [-1, 1], randomly flipped (the usual augmentation)."""
    x = to_tensor(images)
    flip = torch.rand(len(x), generator=gen) < 0.5
    x[flip] = torch.flip(x[flip], dims=[3])
    return x.to(device, non_blocking=True)


@dataclass
class Progress:
    """Throughput and cost bookkeeping, and the lines a person running a sweep reads."""

    stage: str
    total_iters: int
    flops_per_image: float
    device: torch.device
    started: float = field(default_factory=time.perf_counter)
    images: int = 0
    window_images: int = 0
    window_start: float = field(default_factory=time.perf_counter)
    bar: Any = None

    def __post_init__(self) -> None:
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total_iters, desc=self.stage, unit="it", leave=False)

    def step(self, n_images: int, loss: float) -> None:
        self.images += n_images
        self.window_images += n_images
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.3f}", refresh=False)

    def rate(self) -> tuple[float, float]:
        """(images/s, achieved FLOP/s) since the last call."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        elapsed = max(now - self.window_start, 1e-9)
        ips = self.window_images / elapsed
        self.window_images, self.window_start = 0, now
        return ips, ips * self.flops_per_image

    def restart_window(self) -> None:
        self.window_images, self.window_start = 0, time.perf_counter()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, default=float) + "\n")


def _autocast(device: torch.device, enabled: bool):
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return nullcontext()


def _format_metrics(m: Mapping[str, Any]) -> str:
    """One log line: loss, throughput, and the accuracies of the run's own path ("a&b")."""
    accs = {k: v for k, v in m.items() if k.startswith("acc_") and not k.endswith("_std")}
    own = {k: v for k, v in accs.items() if k.count("_") == 2}
    if not own:  # stage 1 has only the upsample path
        own = {k.removesuffix("_upsample"): v for k, v in accs.items() if k.endswith("_upsample")}
    shown = " ".join(f"{k[4:].replace('_', '&')}={v:.3f}" for k, v in own.items())
    return (
        f"epoch {m['epoch']} loss {m['loss']:.4f} {m['images_per_s']:.1f} img/s "
        f"{m['achieved_flops'] / 1e9:.2f} GFLOP/s {shown}"
    )


# ---------------------------------------------------------------------------------------------
# Stage 1: the trunk


def train_trunk(
    cfg: Config,
    out_dir: str | Path,
    resolution: int | None = None,
    callback: StageCallback | None = None,
    split: Split | None = None,
) -> Path:
    """Train (or resume, or reuse) the trunk in ``out_dir``; return the finished checkpoint.

    ``resolution`` trains the trunk of the ``separate`` method for that resolution: faces are
    degraded to ``r`` and resized back to 112, at training and at test.
    """
    out_dir = Path(out_dir)
    final = out_dir / trunk_file(resolution)
    if final.exists():
        log.info("trunk %s already trained; reusing it", final)
        return final
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg["device"])
    seed_everything(cfg["seed"])
    split = split if split is not None else split_faces(cfg)
    s1 = cfg["stage1"]
    trunk = build_trunk(cfg["model"]).to(device)
    head = _build_head(cfg, split.num_classes).to(device)
    params = list(trunk.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(
        [p for p in params if p.requires_grad],
        lr=s1["lr"],
        momentum=s1["momentum"],
        weight_decay=s1["weight_decay"],
    )
    tag = f"stage1{'' if resolution is None else f'-r{resolution}'}"
    state_path = out_dir / f"{tag}_state.pt"
    modules = {"trunk": trunk, "head": head}
    start_epoch = checkpoints.resume(state_path, modules, optimizer)
    multires = multires_trunk(cfg)
    spec = degradation_of(cfg)
    evaluator = _evaluator(cfg, split, device)
    from btnet_core.cost import trunk_macs

    flops = TRAIN_FLOPS_PER_MAC * trunk_macs(trunk)
    log.info(
        "stage 1%s: training the trunk (%s width %s) on %s, %d classes, %d epochs",
        "" if resolution is None else f" (separate model for {resolution}x{resolution})",
        cfg["model"]["network"],
        cfg["model"]["width"],
        split.description,
        split.num_classes,
        s1["epochs"],
    )

    def prepare(images: np.ndarray, labels: np.ndarray, gen: torch.Generator):
        x = hr_batch(images, gen, device)
        if resolution is not None:
            x = upsample_to(degrade(x, resolution, spec, generator=gen), TRUNK_INPUT)
        elif multires:
            x = _multires(x, s1["multires_resolutions"], spec, gen)
        return x, torch.as_tensor(labels, device=device)

    def loss_fn(x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        return head(trunk(x), y), {}

    def evaluate() -> dict[str, float]:
        trunk.eval()

        def embed(x: Tensor, r: int) -> Tensor:
            return trunk(upsample_to(x, TRUNK_INPUT) if r != TRUNK_INPUT else x)

        m = evaluator.matrix({"upsample": embed})
        trunk.train()
        return m

    _run_stage(
        cfg,
        s1,
        tag,
        modules,
        [trunk, head],
        optimizer,
        split,
        prepare,
        loss_fn,
        evaluate,
        start_epoch,
        state_path,
        out_dir,
        flops,
        device,
        lambda m, _dir: callback(m) if callback else None,
    )
    checkpoints.save_trunk(final, trunk, head, cfg, split.num_classes, resolution)
    log.info("stage 1 done: %s", final)
    return final


def _multires(x: Tensor, resolutions: list[int], spec, gen: torch.Generator) -> Tensor:
    """Resize each face to a random resolution and back to 112 (the released trunk's
    multi-resolution augmentation)."""
    choice = torch.randint(len(resolutions), (len(x),), generator=gen)
    out = x.clone()
    for i, r in enumerate(resolutions):
        pick = choice == i
        if r != TRUNK_INPUT and pick.any():
            out[pick] = upsample_to(degrade(x[pick], r, spec, generator=gen), TRUNK_INPUT)
    return out


def _build_head(cfg: Config, num_classes: int) -> MarginHead:
    h = cfg["head"]
    params = {k: h[k] for k in ("scale", "margin", "h", "t_alpha") if h[k] is not None}
    return build_head(h["type"], cfg["model"]["embedding_size"], num_classes, **params)


def _evaluator(cfg: Config, split: Split, device: torch.device) -> Evaluator:
    e = cfg["eval"]
    idx1, idx2, same = verification_pairs(split.eval_labels, e["pairs"], cfg["seed"])
    used = np.unique(np.concatenate([idx1, idx2]))
    where = {int(old): new for new, old in enumerate(used)}
    images = split.source.fetch(split.eval_index[used])
    openset = None
    if e["openset"]:
        openset = OpenSetProbes.from_labels(
            split.source.fetch, split.eval_index, split.eval_labels, cfg["seed"]
        )
    pairs = PairSet(
        images,
        np.array([where[int(i)] for i in idx1]),
        np.array([where[int(i)] for i in idx2]),
        np.asarray(same, dtype=bool),
    )
    return Evaluator(
        pairs,
        e["resolutions"],
        degradation_of(cfg),
        device,
        folds=e["folds"],
        flip=e["flip"],
        seed=cfg["seed"],
        openset=openset,
    )


def _run_stage(
    cfg: Config,
    stage_cfg: Mapping[str, Any],
    tag: str,
    modules: Mapping[str, nn.Module],
    trained: list[nn.Module],
    optimizer: torch.optim.Optimizer,
    split: Split,
    prepare: Callable,
    loss_fn: Callable[[Tensor, Tensor], tuple[Tensor, dict[str, float]]],
    evaluate: Callable[[], dict[str, float]],
    start_epoch: int,
    state_path: Path,
    out_dir: Path,
    flops_per_image: float,
    device: torch.device,
    report: Callable[[dict[str, Any], Path], None],
) -> dict[str, Any]:
    """The training loop of either stage; returns the last evaluation's metrics."""
    epochs = stage_cfg["epochs"]
    per_epoch = max(1, len(split.train_index) // stage_cfg["batch_size"])
    schedule = Schedule(
        stage_cfg["lr"],
        epochs * per_epoch,
        int(stage_cfg["warmup_epochs"] * per_epoch),
        stage_cfg["poly_power"],
    )
    use_amp = stage_cfg["amp"] and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    params = [p for m in trained for p in m.parameters() if p.requires_grad]
    progress = Progress(tag, (epochs - start_epoch) * per_epoch, flops_per_image, device)
    metrics: dict[str, Any] = {}
    gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + start_epoch)
    it = start_epoch * per_epoch
    loss_sum, loss_n = 0.0, 0
    try:
        for epoch in range(start_epoch, epochs):
            gen.manual_seed(cfg["seed"] * 1000 + epoch)
            for images, labels in batches(split, stage_cfg["batch_size"], cfg["seed"], epoch):
                # 1. learning rate
                for group in optimizer.param_groups:
                    group["lr"] = schedule(it)
                # 2. forward and loss
                x, y = prepare(images, labels, gen)
                with _autocast(device, use_amp):
                    loss, _parts = loss_fn(x, y)
                if not check_finite(loss):
                    raise DivergedError(
                        f"{tag}: loss is {float(loss.detach())} at epoch {epoch + 1}, "
                        f"iteration {it} (lr {schedule(it):.4g}); the run diverged"
                    )
                # 3. backward, clip, step
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if stage_cfg["grad_clip"] > 0:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(params, stage_cfg["grad_clip"])
                scaler.step(optimizer)
                scaler.update()
                it += 1
                loss_sum += float(loss.detach())
                loss_n += 1
                progress.step(len(x), loss_sum / loss_n)
            # 4. evaluate, checkpoint, log, report
            last = epoch + 1 == epochs
            if (epoch + 1) % cfg["eval"]["every"] == 0 or last:
                ips, achieved = progress.rate()
                metrics = {
                    "stage": tag,
                    "epoch": epoch + 1,
                    "iteration": it,
                    "loss": loss_sum / max(loss_n, 1),
                    "images_per_s": ips,
                    "achieved_flops": achieved,
                }
                loss_sum, loss_n = 0.0, 0
                metrics.update(evaluate())
                checkpoints.save_state(state_path, modules, optimizer, epoch + 1, cfg)
                append_jsonl(out_dir / "metrics.jsonl", metrics)
                log.info("%s %s", tag, _format_metrics(metrics))
                report(metrics, state_path.parent)
                progress.restart_window()  # evaluation time is not training throughput
        if epochs == 0 or start_epoch >= epochs:
            metrics = {
                "stage": tag,
                "epoch": epochs,
                "iteration": it,
                "loss": float("nan"),
                "images_per_s": 0.0,
                "achieved_flops": 0.0,
            }
            metrics.update(evaluate())
    finally:
        progress.close()
    return metrics


# ---------------------------------------------------------------------------------------------
# Stage 2: the branches


def freeze_trunk(model: BTNet, trunk_bn: str) -> None:
    """Freeze the trunk: no gradients and, unless ``trunk_bn == "trainable"``, BatchNorm in
    eval mode so its running statistics stay unchanged."""
    for p in model.trunk.parameters():
        p.requires_grad = False
    if trunk_bn == "trainable":
        # The authors' released behaviour: BN affine parameters train and statistics move.
        for m in model.trunk.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                for name, p in m.named_parameters():
                    p.requires_grad = not (isinstance(m, nn.BatchNorm1d) and name == "weight")


def set_train_mode(model: BTNet, trunk_bn: str) -> None:
    model.train()
    if trunk_bn == "frozen":
        model.trunk.eval()


def train_branches(
    cfg: Config,
    out_dir: str | Path,
    trunks: Mapping[int | None, str | Path],
    callback: BranchCallback | None = None,
    resume_from: str | Path | None = None,
    split: Split | None = None,
) -> dict[str, Any]:
    """Stage 2 and evaluation of one run; returns the final metrics.

    ``trunks`` maps ``None`` to the trunk checkpoint (and, for the ``separate`` method, each
    resolution to its own trunk). ``callback(metrics, checkpoint_dir)`` is called at every
    evaluation interval; ``checkpoint_dir`` holds what :func:`train_branches` needs to resume
    (pass it back as ``resume_from``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg["device"])
    seed_everything(cfg["seed"] + 1)
    split = split if split is not None else split_faces(cfg)
    method = cfg["method"]
    if method == "separate":
        return _evaluate_separate(cfg, out_dir, trunks, split, device, callback)

    trunk, trunk_head = checkpoints.load_trunk(trunks[None], cfg, split.num_classes, device)
    if method in ("upsample", "multires"):
        return _evaluate_upsample(cfg, out_dir, trunk, split, device, callback)

    model = build_btnet(cfg["model"], trunk).to(device)
    trunk_bn = cfg["model"]["trunk_bn"]
    freeze_trunk(model, trunk_bn)
    for p in trunk_head.parameters():
        p.requires_grad = False
    trunk_head.eval()
    compat = cfg["compat"]
    own_heads = nn.ModuleDict()
    if compat["type"] != "bct":
        own_heads = nn.ModuleDict(
            {str(r): _build_head(cfg, split.num_classes) for r in model.resolutions}
        ).to(device)
    s2 = cfg["stage2"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable += list(own_heads.parameters())
    optimizer = torch.optim.SGD(
        trainable, lr=s2["lr"], momentum=s2["momentum"], weight_decay=s2["weight_decay"]
    )
    state_dir = out_dir / "stage2"
    state_path = state_dir / "state.pt"
    # The resumable state holds what stage 2 changes: the branches and their own heads (and,
    # with the authors' trainable trunk BN, the trunk); never a second copy of a frozen trunk.
    modules: dict[str, nn.Module] = {"branches": model.branches, "own_heads": own_heads}
    if trunk_bn == "trainable":
        modules["trunk"] = model.trunk
    start_epoch = 0
    if resume_from is not None:
        start_epoch = checkpoints.resume(Path(resume_from) / "state.pt", modules, optimizer)
    elif state_path.exists():
        start_epoch = checkpoints.resume(state_path, modules, optimizer)
    spec = degradation_of(cfg)
    evaluator = _evaluator(cfg, split, device)
    costs = path_costs(model, evaluator.resolutions)
    cost_metrics = _cost_metrics(costs, "branch")
    storage = storage_cost(model, evaluator.resolutions)
    cost_metrics["storage_params"] = storage.shared_trunk_and_branches
    cost_metrics["separate_storage_params"] = storage.separate_models
    trunk_macs = next(c.macs for c in costs if c.resolution == TRUNK_INPUT)
    branch_macs = sum(
        c.macs for c in costs if c.path == "branch" and c.resolution in model.resolutions
    )
    # Per HR image: the teacher's forward pass plus training every branch on its copy.
    flops = 2 * trunk_macs + TRAIN_FLOPS_PER_MAC * branch_macs
    points = model.insertion_points
    log.info(
        "stage 2: training branches %s (insertion points %s), trunk BN %s, compat %s",
        model.resolutions,
        points,
        trunk_bn,
        compat["type"],
    )

    noise_gen = torch.Generator().manual_seed(cfg["seed"] + 2)

    def prepare(images: np.ndarray, labels: np.ndarray, gen: torch.Generator):
        x = hr_batch(images, gen, device)
        return x, torch.as_tensor(labels, device=device)

    def loss_fn(x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        with torch.no_grad():
            maps, teacher = model.trunk.features_at(x, list(points.values()))
        total = x.new_zeros(())
        parts: dict[str, float] = {}
        for r in model.resolutions:
            low = degrade(x, r, spec, generator=noise_gen)
            implant, emb = model.embed_branch(low, r)
            head = trunk_head if compat["type"] == "bct" else own_heads[str(r)]
            loss = head(emb, y)
            distill, dparts = distillation_loss(
                implant, maps[points[r]], emb, teacher, cfg["distill"]
            )
            loss = loss + distill
            if compat["type"] in ("l2", "cosine"):
                loss = loss + compat["weight"] * alignment_loss(emb, teacher, compat["type"])
            total = total + loss
            parts.update({f"{k}_{r}": v for k, v in dparts.items()})
        return total, parts

    def evaluate() -> dict[str, float]:
        model.eval()
        m = evaluator.matrix(
            {
                "branch": lambda x, r: model.embed(
                    x, "branch" if str(r) in model.branches or r == TRUNK_INPUT else "upsample"
                ),
                "upsample": lambda x, r: model.embed(x, "upsample"),
            }
        )
        set_train_mode(model, trunk_bn)
        m.update(primary_metrics(m, "branch"))
        m.update(cost_metrics)
        return m

    def report(metrics: dict[str, Any], _state_dir: Path) -> None:
        if callback is not None:
            callback(metrics, state_dir)

    set_train_mode(model, trunk_bn)
    state_dir.mkdir(exist_ok=True)
    metrics = _run_stage(
        cfg,
        s2,
        "stage2",
        modules,
        [model, own_heads],
        optimizer,
        split,
        prepare,
        loss_fn,
        evaluate,
        start_epoch,
        state_path,
        out_dir,
        flops,
        device,
        report,
    )
    for r in model.resolutions:
        checkpoints.save_branch(out_dir / f"branch_{r}.pt", model, r, cfg, trunks[None])
    if trunk_bn == "trainable":
        # The trunk changed (the authors' behaviour): keep the trunk this run's branches need.
        checkpoints.save_trunk(
            out_dir / "trunk_modified.pt", model.trunk, trunk_head, cfg, split.num_classes, None
        )
    _write_final(out_dir, metrics)
    return metrics


def _cost_metrics(costs, own_path: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for c in costs:
        out[f"macs_{c.resolution}_{c.path}"] = c.macs
        out[f"params_{c.resolution}_{c.path}"] = c.params
        if c.path == own_path:
            out[f"macs_{c.resolution}"] = c.macs
            out[f"params_{c.resolution}"] = c.params
        if c.path == "branch":
            out[f"branch_params_{c.resolution}"] = c.branch_params
    return out


def _evaluate_upsample(cfg, out_dir, trunk: IResNet, split, device, callback) -> dict[str, Any]:
    """The upsample baseline (and the multi-resolution-augmented trunk): no stage 2; every
    low-resolution face is resized to 112 and embedded by the trunk."""
    trunk.eval()
    evaluator = _evaluator(cfg, split, device)
    model = build_btnet({**cfg["model"], "resolutions": []}, trunk)
    metrics: dict[str, Any] = {
        "stage": "eval",
        "epoch": 0,
        "iteration": 0,
        "loss": float("nan"),
        "images_per_s": 0.0,
        "achieved_flops": 0.0,
        "protocol": evaluator.protocol,
    }
    metrics.update(evaluator.matrix({"upsample": lambda x, r: model.embed(x, "upsample")}))
    metrics.update(primary_metrics(metrics, "upsample"))
    metrics.update(_cost_metrics(path_costs(model, [TRUNK_INPUT]), "upsample"))
    for r in evaluator.resolutions:
        metrics[f"macs_{r}"] = metrics[f"macs_{TRUNK_INPUT}"]
        metrics[f"params_{r}"] = metrics[f"params_{TRUNK_INPUT}"]
    append_jsonl(out_dir / "metrics.jsonl", metrics)
    log.info("upsample baseline: %s", _format_metrics(metrics))
    if callback is not None:
        callback(metrics, out_dir)
    _write_final(out_dir, metrics)
    return metrics


def _evaluate_separate(cfg, out_dir, trunks, split, device, callback) -> dict[str, Any]:
    """One model per resolution: a face at ``r`` is resized to 112 and embedded by the model
    trained for ``r`` (the HR model for 112). Cross-resolution pairs mix two models whose
    embedding spaces were never aligned -- which is the point BTNet makes."""
    models = {}
    for r, path in trunks.items():
        trunk, _ = checkpoints.load_trunk(path, cfg, split.num_classes, device)
        models[TRUNK_INPUT if r is None else r] = trunk.eval()
    evaluator = _evaluator(cfg, split, device)

    def embed(x: Tensor, r: int) -> Tensor:
        model = models.get(r, models[TRUNK_INPUT])
        return model(upsample_to(x, TRUNK_INPUT) if r != TRUNK_INPUT else x)

    metrics: dict[str, Any] = {
        "stage": "eval",
        "epoch": 0,
        "iteration": 0,
        "loss": float("nan"),
        "images_per_s": 0.0,
        "achieved_flops": 0.0,
        "protocol": evaluator.protocol,
    }
    with torch.no_grad():
        metrics.update(evaluator.matrix({"separate": embed}))
    metrics.update(primary_metrics(metrics, "separate"))
    from btnet_core.cost import trunk_macs

    macs = trunk_macs(models[TRUNK_INPUT])
    n_params = sum(p.numel() for p in models[TRUNK_INPUT].parameters())
    for r in evaluator.resolutions:
        metrics[f"macs_{r}"] = macs
        metrics[f"params_{r}"] = n_params
    metrics["storage_params"] = n_params * len(models)
    append_jsonl(out_dir / "metrics.jsonl", metrics)
    log.info("separate models: %s", _format_metrics(metrics))
    if callback is not None:
        callback(metrics, out_dir)
    _write_final(out_dir, metrics)
    return metrics


def _write_final(out_dir: Path, metrics: Mapping[str, Any]) -> None:
    checkpoints.atomic_write_text(
        out_dir / "final_metrics.json", json.dumps(dict(metrics), indent=1, default=float)
    )


# ---------------------------------------------------------------------------------------------
# Both stages


def train(
    cfg: Config,
    out_dir: str | Path,
    callback: BranchCallback | None = None,
) -> dict[str, Any]:
    """One whole run in ``out_dir``: the resolved config, stage 1, stage 2, final metrics.

    Resumes where an interrupted run in the same directory stopped.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints.atomic_write_text(out_dir / "config.yaml", dump_yaml(cfg))
    split = split_faces(cfg)
    trunks = {r: train_trunk(cfg, out_dir, r, split=split) for r in trunk_resolutions(cfg)}
    metrics = train_branches(cfg, out_dir, trunks, callback, split=split)
    return metrics


def is_finished(out_dir: str | Path) -> bool:
    """Whether ``out_dir`` holds a finished run (its final metrics are written last)."""
    return (Path(out_dir) / "final_metrics.json").exists()
