"""Names of the metrics and cost columns that the BTNet core reports, parsed.

Accuracy metrics are named ``acc_{a}_{b}`` for the multi-resolution match "a&b" (first image
at resolution a, second at b) through the method's own deployment path, and
``acc_{a}_{b}_branch`` / ``acc_{a}_{b}_upsample`` through the branch path and the
upsample-to-112 baseline path. Costs are ``macs_{r}_{path}``, ``params_{r}_{path}`` (path
``branch`` or ``upsample``), ``branch_params_{r}``, and ``macs_{r}`` / ``params_{r}`` for the
method's own path. In the store, metric ``m`` appears as ``final_m`` and ``best_m``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

#: The three ways a probe can reach the trunk's embedding space.
PATHS = ("method", "branch", "upsample")
#: The trunk's input resolution: the high-resolution gallery side of cross-resolution pairs.
HR = 112

_ACC = re.compile(r"acc_(\d+)_(\d+)(?:_(branch|upsample))?")


@dataclass(frozen=True)
class AccuracyMetric:
    """One parsed accuracy metric.

    Attributes:
        name: The metric name without ``final_``/``best_`` (``acc_112_7_branch``).
        a: Resolution of the first image of each pair.
        b: Resolution of the second image.
        path: ``"method"``, ``"branch"`` or ``"upsample"``.
    """

    name: str
    a: int
    b: int
    path: str

    @property
    def pair(self) -> str:
        """The pair in the field's notation, ``"112&7"``."""
        return f"{self.a}&{self.b}"

    @property
    def probe(self) -> int:
        """The lower of the two resolutions (the probe of a cross-resolution match)."""
        return min(self.a, self.b)


def parse_accuracy(name: str) -> AccuracyMetric | None:
    """Parse ``acc_{a}_{b}[_{path}]`` (a ``final_``/``best_`` prefix is stripped); None if not."""
    for prefix in ("final_", "best_"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    m = _ACC.fullmatch(name)
    if not m:
        return None
    return AccuracyMetric(name, int(m.group(1)), int(m.group(2)), m.group(3) or "method")


def accuracy_metrics(columns: Iterable[str], prefix: str = "final_") -> list[AccuracyMetric]:
    """Accuracy metrics among ``columns`` that carry ``prefix``, sorted by path, a desc, b desc."""
    out = []
    for col in columns:
        if col.startswith(prefix):
            parsed = parse_accuracy(col[len(prefix) :])
            if parsed is not None:
                out.append(parsed)
    return sorted(out, key=lambda m: (PATHS.index(m.path), -m.a, -m.b))


def acc_column(a: int, b: int, path: str = "method", prefix: str = "final_") -> str:
    """Store column of an accuracy.

    Example: ``acc_column(112, 7, "branch")`` is ``final_acc_112_7_branch``.
    """
    suffix = "" if path == "method" else f"_{path}"
    return f"{prefix}acc_{a}_{b}{suffix}"


def cost_column(kind: str, resolution: int, path: str = "method") -> str:
    """Store column of a cost: ``cost_column("macs", 7, "branch")`` -> ``macs_7_branch``.

    Args:
        kind: ``"macs"`` or ``"params"``.
        resolution: Input resolution.
        path: ``"method"``, ``"branch"`` or ``"upsample"``.
    """
    if kind not in ("macs", "params"):
        raise ValueError(f"cost kind {kind!r} is not macs or params")
    return f"{kind}_{resolution}" if path == "method" else f"{kind}_{resolution}_{path}"


def probe_resolutions(columns: Iterable[str], gallery: int = HR) -> list[int]:
    """Probe resolutions r with an ``acc_{gallery}_{r}`` metric in ``columns``, descending."""
    found = {m.b for m in accuracy_metrics(columns) if m.a == gallery}
    return sorted(found, reverse=True)


def pair_label(metric: str) -> str:
    """Readable label of a metric: ``acc_112_7_branch`` -> ``112&7 branch``; others unchanged."""
    parsed = parse_accuracy(metric)
    if parsed is None:
        return metric
    return parsed.pair if parsed.path == "method" else f"{parsed.pair} {parsed.path}"
