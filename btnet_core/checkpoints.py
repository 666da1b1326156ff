"""Checkpoints of btnet-lab: written atomically, read without running any code.

Every file is a ``torch.save`` of plain tensors, numbers, strings, lists and dicts, and every
read uses ``torch.load(weights_only=True)``: a checkpoint from elsewhere can hold tensors, not
programs. Each checkpoint records the network it belongs to, so a branch or trunk of another
network is refused with a clear error instead of a shape mismatch deep inside PyTorch.

Files:
- ``trunk.pt``: the trunk's state, its classifier (needed for backward-compatible training)
  and ``meta`` (network, width, embedding size, classes, the config).
- ``branch_{r}.pt``: only the parameters and buffers of the branch for resolution ``r``, its
  insertion point and the trunk it was trained against (sha256 of that trunk file).
- ``*_state.pt``: the training state of a stage (model, optimiser, epoch) for resuming.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from btnet_core.config import Config
from btnet_core.errors import CheckpointError
from btnet_core.heads import MarginHead
from btnet_core.model import BTNet, IResNet, build_trunk

FORMAT_VERSION = 1


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers see the old content or the new, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _save(path: Path, obj: Mapping[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(dict(obj), buf)
    atomic_write_bytes(path, buf.getvalue())


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt or unsafe files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: not a readable btnet-lab checkpoint ({first[:200]})"
        ) from None
    if not isinstance(obj, dict) or "meta" not in obj:
        raise CheckpointError(f"{path}: not a btnet-lab checkpoint (no 'meta' record)")
    return obj


def _meta(cfg: Config, **extra: Any) -> dict[str, Any]:
    m = cfg["model"]
    return {
        "format": FORMAT_VERSION,
        "network": m["network"],
        "width": float(m["width"]),
        "embedding_size": int(m["embedding_size"]),
        "config": json.dumps(cfg.to_dict()),
        **extra,
    }


def _check_meta(path: Path, meta: Mapping[str, Any], cfg: Config) -> None:
    m = cfg["model"]
    want = {
        "network": m["network"],
        "width": float(m["width"]),
        "embedding_size": int(m["embedding_size"]),
    }
    for key, value in want.items():
        if meta.get(key) != value:
            raise CheckpointError(
                f"{path}: checkpoint is for {key}={meta.get(key)!r}, but the config asks for "
                f"{key}={value!r}"
            )


def save_trunk(
    path: Path,
    trunk: IResNet,
    head: MarginHead,
    cfg: Config,
    num_classes: int,
    resolution: int | None,
) -> None:
    _save(
        path,
        {
            "meta": _meta(
                cfg,
                kind="trunk",
                num_classes=int(num_classes),
                head=cfg["head"]["type"],
                resolution=resolution,
            ),
            "trunk": trunk.state_dict(),
            "head": head.state_dict(),
        },
    )


def load_trunk(
    path: str | Path, cfg: Config, num_classes: int, device: torch.device
) -> tuple[IResNet, MarginHead]:
    """The trunk and its classifier, checked against the config."""
    from btnet_core.train import _build_head

    path = Path(path)
    obj = load(path)
    meta = obj["meta"]
    if meta.get("kind") != "trunk":
        raise CheckpointError(f"{path}: is a {meta.get('kind')} checkpoint, not a trunk")
    _check_meta(path, meta, cfg)
    if meta.get("num_classes") != num_classes:
        raise CheckpointError(
            f"{path}: trunk classifier has {meta.get('num_classes')} classes, the data has "
            f"{num_classes} training identities"
        )
    trunk = build_trunk(cfg["model"])
    head = _build_head(cfg, num_classes)
    try:
        trunk.load_state_dict(obj["trunk"])
        head.load_state_dict(obj["head"])
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: weights do not fit the network ({str(exc)[:200]})"
        ) from None
    return trunk.to(device), head.to(device)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def save_branch(
    path: Path, model: BTNet, resolution: int, cfg: Config, trunk_path: str | Path
) -> None:
    branch = model.branch(resolution)
    _save(
        path,
        {
            "meta": _meta(
                cfg,
                kind="branch",
                resolution=int(resolution),
                insertion_point=branch.insertion_point,
                trunk_sha256=file_digest(trunk_path),
            ),
            "branch": branch.state_dict(),
        },
    )


def load_branch(path: str | Path, model: BTNet, cfg: Config) -> int:
    """Load a branch checkpoint into ``model`` (which must have that branch); its resolution."""
    path = Path(path)
    obj = load(path)
    meta = obj["meta"]
    if meta.get("kind") != "branch":
        raise CheckpointError(f"{path}: is a {meta.get('kind')} checkpoint, not a branch")
    _check_meta(path, meta, cfg)
    r = int(meta["resolution"])
    if str(r) not in model.branches:
        raise CheckpointError(f"{path}: branch {r} is not in model.resolutions")
    if model.branch(r).insertion_point != meta["insertion_point"]:
        raise CheckpointError(
            f"{path}: branch {r} was implanted at {meta['insertion_point']}, the config puts "
            f"it at {model.branch(r).insertion_point}"
        )
    model.branch(r).load_state_dict(obj["branch"])
    return r


def save_state(
    path: Path,
    modules: Mapping[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    epoch: int,
    cfg: Config,
) -> None:
    """The training state of a stage, enough to resume after ``epoch`` epochs."""
    _save(
        path,
        {
            "meta": _meta(cfg, kind="state", epoch=int(epoch)),
            "modules": {k: m.state_dict() for k, m in modules.items()},
            "optimizer": optimizer.state_dict(),
        },
    )


def resume(path: Path, modules: Mapping[str, nn.Module], optimizer: torch.optim.Optimizer) -> int:
    """Restore a stage's state if ``path`` exists; the number of epochs already done."""
    if not Path(path).exists():
        return 0
    obj = load(path)
    try:
        for key, module in modules.items():
            module.load_state_dict(obj["modules"][key])
        optimizer.load_state_dict(obj["optimizer"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot resume from it ({str(exc)[:200]})") from None
    return int(obj["meta"]["epoch"])
