"""Held-out verification during training: the cross-resolution matrix "a&b".

For each pair of held-out faces the first image is shown at resolution ``a`` and the second at
``b``, each degraded from the 112x112 original by the one degradation function and embedded
through a *path*: its branch (BTNet), the upsample-to-112 baseline, or a separate model. The
accuracy follows the InsightFace protocol (flip test, squared Euclidean distance on
L2-normalised embeddings, 10-fold cross-validated threshold).

The second half of the module evaluates a *finished* run on any faces (``btnet-lab evaluate``,
:mod:`btnet_core.evaluate_cli`): :func:`load_run` loads its networks as named paths,
:func:`verification_matrix` and :func:`aggregate_accuracies` give every "a&b" setting and the
feature aggregation "trunk at 112 + path at b of the flipped face", and :class:`FaceEmbedder`
embeds gallery and probe faces for closed-set (:func:`identification`) and open-set
(:func:`open_set`) identification, with per-probe resolutions for routed native-size probes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from btnet_core import checkpoints
from btnet_core.config import Config, read_yaml, resolve_config
from btnet_core.data import fit_face
from btnet_core.degrade import Degradation, degrade, to_tensor, upsample
from btnet_core.errors import CheckpointError, ConfigError, DataError
from btnet_core.metrics import (
    OpenSetResult,
    RankResult,
    VerificationResult,
    rank_k,
    tpir_at_fpir,
    verification_accuracy,
    verification_protocol,
)
from btnet_core.model import TRUNK_INPUT, IResNet, build_btnet

log = logging.getLogger(__name__)

# A path embeds a batch of faces at resolution r (N, 3, r, r) into (N, D) embeddings.
EmbedFn = Callable[[Tensor, int], Tensor]


def matrix_pairs(resolutions: Iterable[int]) -> list[tuple[int, int]]:
    """The settings of the matrix: 112&r and r&r for every r (112&112 once)."""
    out: list[tuple[int, int]] = []
    for r in sorted(set(resolutions), reverse=True):
        for pair in ((TRUNK_INPUT, r), (r, r)):
            if pair not in out:
                out.append(pair)
    return out


def degradation_of(cfg: Mapping) -> Degradation:
    """The config's ``degrade`` section as a Degradation."""
    d = cfg["degrade"]
    return Degradation(
        d["kernel"], d["antialias"], d["blur_sigma"], d["noise_std"], d["jpeg_quality"]
    )


@dataclass
class PairSet:
    """Verification pairs over a set of faces: images (uint8 NHWC at 112) and index pairs."""

    images: np.ndarray
    idx1: np.ndarray
    idx2: np.ndarray
    issame: np.ndarray


#: Open-set operating point of the trial metrics: TPIR at this FPIR, identity within rank 1.
OPENSET_FPIR = 0.1
OPENSET_RANK = 1


@dataclass
class OpenSetProbes:
    """Held-out faces for open-set identification during training (``eval.openset``).

    Half the held-out identities are enrolled: one face of each, at 112 through the trunk, is
    the gallery (HR enrolment, as in watch-list surveillance); their other faces are the mated
    probes. Every face of the other half is an unmated probe. Built by :meth:`from_labels`.
    """

    images: np.ndarray  # uint8 NHWC at 112: gallery, then mated, then unmated
    gallery_ids: np.ndarray
    mated_ids: np.ndarray
    n_unmated: int

    @classmethod
    def from_labels(
        cls,
        fetch: Callable[[np.ndarray], np.ndarray],
        index: np.ndarray,
        labels: np.ndarray,
        seed: int,
    ) -> OpenSetProbes:
        """Choose the enrolled half, gallery faces and probes (seeded) from held-out faces.

        Raises:
            DataError: with fewer than 4 held-out identities, or an enrolled identity with a
                single face (it would have no mated probe).
        """
        ids = np.unique(labels)
        if len(ids) < 4:
            raise DataError(
                f"eval.openset needs at least 4 held-out identities, got {len(ids)}; "
                "raise data.held_out"
            )
        rng = np.random.default_rng(seed)
        enrolled = np.sort(rng.permutation(ids)[: len(ids) // 2])
        gallery, mated, unmated = [], [], []
        gallery_ids, mated_ids = [], []
        for i in ids:
            own = index[labels == i]
            if i not in enrolled:
                unmated.extend(own)
                continue
            if len(own) < 2:
                raise DataError(f"eval.openset: held-out identity {i} has a single face")
            pick = rng.integers(len(own))
            gallery.append(own[pick])
            gallery_ids.append(i)
            rest = np.delete(own, pick)
            mated.extend(rest)
            mated_ids.extend([i] * len(rest))
        return cls(
            images=fetch(np.asarray(gallery + mated + unmated)),
            gallery_ids=np.asarray(gallery_ids),
            mated_ids=np.asarray(mated_ids),
            n_unmated=len(unmated),
        )


class Evaluator:
    """Computes "a&b" verification accuracies on a fixed set of pairs.

    The degraded inputs are made once (with a fixed generator, so noise and JPEG are the same
    at every evaluation) and reused at every evaluation interval.
    """

    def __init__(
        self,
        pairs: PairSet,
        resolutions: Iterable[int],
        degradation: Degradation,
        device: torch.device,
        folds: int = 10,
        flip: bool = True,
        batch_size: int = 128,
        seed: int = 0,
        openset: OpenSetProbes | None = None,
    ):
        self.pairs = pairs
        self.resolutions = sorted(set(resolutions) | {TRUNK_INPUT})
        self.device = device
        self.folds = folds
        self.flip = flip
        self.batch_size = batch_size
        hr = to_tensor(pairs.images)
        gen = torch.Generator().manual_seed(seed)
        self.inputs = {r: degrade(hr, r, degradation, generator=gen) for r in self.resolutions}
        self.protocol = verification_protocol(folds, flip)
        self.openset = openset
        self.openset_inputs: dict[int, Tensor] = {}
        if openset is not None:
            hr = to_tensor(openset.images)
            gen = torch.Generator().manual_seed(seed + 1)
            self.openset_inputs = {
                r: degrade(hr, r, degradation, generator=gen) for r in self.resolutions
            }

    def embeddings(self, embed: EmbedFn, resolution: int) -> np.ndarray:
        """Flip-test embeddings of every face at ``resolution``, L2-normalised."""
        return self._embed(embed, self.inputs[resolution], resolution)

    @torch.no_grad()
    def _embed(self, embed: EmbedFn, x: Tensor, resolution: int) -> np.ndarray:
        chunks = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start : start + self.batch_size].to(self.device)
            e = embed(batch, resolution).float()
            if self.flip:
                e = e + embed(torch.flip(batch, dims=[3]), resolution).float()
            chunks.append(torch.nn.functional.normalize(e, dim=1).cpu())
        return torch.cat(chunks).numpy()

    def matrix(self, paths: Mapping[str, EmbedFn]) -> dict[str, float | str]:
        """``acc_{a}_{b}_{path}`` (and its std) for every setting of the matrix and path."""
        out: dict[str, float | str] = {"protocol": self.protocol}
        settings = matrix_pairs(r for r in self.resolutions)
        for name, embed in paths.items():
            cache: dict[int, np.ndarray] = {}
            for a, b in settings:
                for r in (a, b):
                    if r not in cache:
                        cache[r] = self.embeddings(embed, r)
                res = verification_accuracy(
                    cache[a][self.pairs.idx1],
                    cache[b][self.pairs.idx2],
                    self.pairs.issame,
                    n_folds=self.folds,
                    flip_test=self.flip,
                )
                out[f"acc_{a}_{b}_{name}"] = float(res.accuracy)
                out[f"acc_{a}_{b}_{name}_std"] = float(res.std)
            out.update(self.open_set(name, embed))
        return out

    def open_set(self, name: str, embed: EmbedFn) -> dict[str, float]:
        """Open-set identification of the probes at every resolution through one path.

        The gallery is embedded at 112 (``embed(x, 112)``: the trunk for every method). Per
        probe resolution ``r``: ``osi_tpir_{r}_{name}`` (TPIR at FPIR 0.1, rank 1),
        ``osi_auc_{r}_{name}`` (area under TPIR against FPIR) and ``osi_rank1_{r}_{name}``
        (closed-set rank-1 rate of the mated probes). Empty without ``openset``.
        """
        s = self.openset
        if s is None:
            return {}
        n_gallery, n_mated = len(s.gallery_ids), len(s.mated_ids)
        gallery = self._embed(embed, self.openset_inputs[TRUNK_INPUT][:n_gallery], TRUNK_INPUT)
        out: dict[str, float] = {}
        for r in self.resolutions:
            probes = self._embed(embed, self.openset_inputs[r][n_gallery:], r)
            res = tpir_at_fpir(
                gallery,
                s.gallery_ids,
                probes[:n_mated],
                s.mated_ids,
                probes[n_mated:],
                (OPENSET_FPIR,),
                OPENSET_RANK,
            )
            out[f"osi_tpir_{r}_{name}"] = float(res.tpir[OPENSET_FPIR])
            out[f"osi_auc_{r}_{name}"] = float(res.auc)
            out[f"osi_rank1_{r}_{name}"] = float(res.top_rank_rate)
        return out


def primary_metrics(metrics: Mapping[str, float], path: str) -> dict[str, float]:
    """Copy ``acc_{a}_{b}_{path}`` (and ``osi_*_{r}_{path}``) to the path-neutral name."""
    suffix = f"_{path}"
    return {
        key[: -len(suffix)]: value
        for key, value in metrics.items()
        if key.startswith(("acc_", "osi_")) and key.endswith(suffix)
    }


# ---------------------------------------------------------------------------------------------
# Evaluating a finished run (``btnet-lab evaluate``, see btnet_core.evaluate_cli)

#: Files of a run directory that evaluation reads: the resolved config, and the final metrics,
#: written last by training, whose presence marks the run as finished.
RUN_CONFIG = "config.yaml"
RUN_FINAL_METRICS = "final_metrics.json"
#: The baseline every run is compared with: the face resized to 112 and embedded by the trunk.
BASELINE_PATH = "upsample"
# Faces degraded and embedded at once: bounds memory on large probe sets (SurvFace, LFW).
_CHUNK = 1024


def cross_resolution_pairs(resolutions: Iterable[int]) -> list[tuple[int, int]]:
    """Every setting "a&b" with ``a >= b`` (the first face at the higher resolution).

    For {7, 14, 112}: 112&112, 112&14, 112&7, 14&14, 14&7, 7&7. It holds the paper's settings
    (:func:`matrix_pairs`) and the mixed low-resolution ones (14&7).
    """
    rs = sorted(set(resolutions) | {TRUNK_INPUT}, reverse=True)
    return [(a, b) for i, a in enumerate(rs) for b in rs[i:]]


@dataclass
class Run:
    """A finished run's networks, ready to embed faces.

    Attributes:
        run_dir: The run directory.
        cfg: Its resolved config.
        method: ``btnet``, ``upsample``, ``multires`` or ``separate``.
        paths: The embedding paths by name, the run's own path first: ``branch`` (btnet) or
            ``separate`` (one model per resolution), then ``upsample``, the baseline; an
            ``upsample`` or ``multires`` run has only the baseline. Each maps an
            ``(N, 3, r, r)`` batch in [-1, 1] to ``(N, D)`` embeddings (not normalised).
        supported: The resolutions each path embeds; ``None``: any from 1 to 112.
        trunk: The trunk that embeds 112x112 faces (galleries, and the aggregation's first
            term). For a run trained with ``model.trunk_bn: trainable`` it is the trunk as
            stage 2 left it (``trunk_modified.pt``), the one its branches were trained with.
        device: Where the networks are.
    """

    run_dir: Path
    cfg: Config
    method: str
    paths: dict[str, EmbedFn]
    supported: dict[str, tuple[int, ...] | None]
    trunk: IResNet
    device: torch.device

    @property
    def primary(self) -> str:
        """The run's own path: ``branch``, ``separate`` or (no other) ``upsample``."""
        return next(iter(self.paths))

    def default_resolutions(self) -> list[int]:
        """The primary path's resolutions, or the run's ``eval.resolutions`` (with 112)."""
        own = self.supported[self.primary]
        chosen = own if own is not None else self.cfg["eval"]["resolutions"]
        return sorted(set(chosen) | {TRUNK_INPUT})

    def check_resolutions(self, resolutions: Iterable[int], option: str) -> list[int]:
        """The resolutions sorted, with 112 added; ConfigError for one no path can embed."""
        out = sorted({int(r) for r in resolutions} | {TRUNK_INPUT})
        for r in out:
            if not 1 <= r <= TRUNK_INPUT:
                raise ConfigError(f"{option}: {r} is not a face size from 1 to {TRUNK_INPUT}")
            for name, allowed in self.supported.items():
                if allowed is not None and r not in allowed:
                    raise ConfigError(
                        f"{option}: {self.run_dir} has no {name} path for {r}x{r} faces "
                        f"(method {self.method}); allowed: {', '.join(map(str, allowed))}"
                    )
        return out


def _trunk_at(path: Path, cfg: Config, device: torch.device) -> IResNet:
    meta = checkpoints.load(path)["meta"]
    num_classes = meta.get("num_classes")
    if meta.get("kind") != "trunk" or not isinstance(num_classes, int):
        raise CheckpointError(f"{path}: not a trunk checkpoint (its meta has no class count)")
    # load_trunk reads the file again; its API needs the class count before it loads.
    trunk, _head = checkpoints.load_trunk(path, cfg, num_classes, device)
    return trunk.eval()


def load_run(run_dir: str | Path, device: torch.device | str = "cpu") -> Run:
    """Load a finished run's networks (only through :mod:`btnet_core.checkpoints`).

    Args:
        run_dir: A directory written by ``btnet-lab train --out`` (or :func:`~btnet_core.train.
            train`): ``config.yaml``, ``trunk.pt``, a ``branch_{r}.pt`` per branch (btnet) or a
            ``trunk_r{r}.pt`` per resolution (separate), and ``final_metrics.json``.
        device: Where to put the networks.

    Returns:
        The run, its paths in eval mode.

    Raises:
        DataError: The directory does not exist.
        CheckpointError: It is not a run directory, the run is unfinished (no
            ``final_metrics.json``), or a checkpoint is missing, corrupt or of another network.
        ConfigError: Its ``config.yaml`` is not a valid config.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run directory (btnet-lab train --out writes one)")
    config_path = run_dir / RUN_CONFIG
    if not config_path.is_file():
        raise CheckpointError(
            f"{run_dir}: not a run directory, it has no {RUN_CONFIG} (btnet-lab train --out "
            "writes one)"
        )
    if not (run_dir / RUN_FINAL_METRICS).is_file():
        raise CheckpointError(
            f"{run_dir}: unfinished run (no {RUN_FINAL_METRICS}); finish it first with "
            f"btnet-lab train {config_path} --out {run_dir}"
        )
    cfg = resolve_config(read_yaml(config_path), str(config_path))
    device = torch.device(device)
    method = cfg["method"]
    trunk_path = run_dir / "trunk.pt"
    if method == "btnet" and cfg["model"]["trunk_bn"] == "trainable":
        # The authors' behaviour: stage 2 moved the trunk's BatchNorm, and the branches (and
        # the baseline evaluated beside them in training) work with that modified trunk.
        modified = run_dir / "trunk_modified.pt"
        if not modified.is_file():
            raise CheckpointError(
                f"{modified}: missing; a run with model.trunk_bn=trainable needs the trunk as "
                "stage 2 left it"
            )
        trunk_path = modified
    trunk = _trunk_at(trunk_path, cfg, device)
    hr_model = build_btnet({**cfg["model"], "resolutions": []}, trunk)

    def baseline(x: Tensor, r: int) -> Tensor:
        return hr_model.embed(x, "upsample")

    paths: dict[str, EmbedFn]
    supported: dict[str, tuple[int, ...] | None]
    if method == "btnet":
        model = build_btnet(cfg["model"], trunk).to(device)
        for r in model.resolutions:
            checkpoints.load_branch(run_dir / f"branch_{r}.pt", model, cfg)
        model.eval()
        paths = {
            "branch": lambda x, r: model.embed(x, "branch"),
            BASELINE_PATH: lambda x, r: model.embed(x, "upsample"),
        }
        supported = {"branch": (*model.resolutions, TRUNK_INPUT), BASELINE_PATH: None}
    elif method == "separate":
        from btnet_core.train import trunk_file, trunk_resolutions  # train imports this module

        models: dict[int, nn.Module] = {TRUNK_INPUT: trunk}
        for own in trunk_resolutions(cfg):
            if own is not None:
                models[own] = _trunk_at(run_dir / trunk_file(own), cfg, device)

        def separate(x: Tensor, r: int) -> Tensor:
            # A face at r goes through the model trained at r, after resizing to 112.
            return models[r](x if r == TRUNK_INPUT else upsample(x, TRUNK_INPUT))

        paths = {"separate": separate, BASELINE_PATH: baseline}
        supported = {"separate": tuple(sorted(models)), BASELINE_PATH: None}
    else:  # upsample, multires: the trunk alone
        paths = {BASELINE_PATH: baseline}
        supported = {BASELINE_PATH: None}
    log.info(
        "loaded run %s: method %s, paths %s, on %s", run_dir, method, ", ".join(paths), device
    )
    return Run(run_dir, cfg, method, paths, supported, trunk, device)


def verification_matrix(
    evaluator: Evaluator,
    paths: Mapping[str, EmbedFn],
    settings: Iterable[tuple[int, int]],
) -> dict[tuple[int, int], dict[str, VerificationResult]]:
    """Verification results of every setting "a&b" through every path.

    The same computation as :meth:`Evaluator.matrix` (whose flat keys training logs), with the
    full results kept and any settings, not only :func:`matrix_pairs`.

    Args:
        evaluator: Holds the pairs and their degraded inputs (every ``a`` and ``b`` must be
            among its resolutions).
        paths: The embedding paths by name.
        settings: ``(a, b)``: the first face of each pair at ``a``, the second at ``b``.

    Returns:
        ``{(a, b): {path: result}}`` in the order of ``settings``.
    """
    wanted = list(settings)
    out: dict[tuple[int, int], dict[str, VerificationResult]] = {s: {} for s in wanted}
    for name, embed in paths.items():
        cache: dict[int, np.ndarray] = {}
        for a, b in wanted:
            for r in (a, b):
                if r not in cache:
                    cache[r] = evaluator.embeddings(embed, r)
            out[(a, b)][name] = verification_accuracy(
                cache[a][evaluator.pairs.idx1],
                cache[b][evaluator.pairs.idx2],
                evaluator.pairs.issame,
                n_folds=evaluator.folds,
                flip_test=evaluator.flip,
            )
    return out


def aggregate_protocol(n_folds: int = 10) -> str:
    """Protocol id of :func:`aggregate_accuracy`: the verification protocol on aggregated
    features (trunk at 112 plus a path on the flipped face; that sum replaces the flip test)."""
    return f"verification/insightface-{n_folds}fold-sqeuclid-aggregate-trunk112+flipped"


@torch.no_grad()
def _raw_embeddings(evaluator: Evaluator, embed: EmbedFn, x: Tensor, resolution: int) -> Tensor:
    """Embeddings of ``x`` (not normalised, no flip test), batch by batch, on the CPU."""
    chunks = []
    for start in range(0, len(x), evaluator.batch_size):
        batch = x[start : start + evaluator.batch_size].to(evaluator.device)
        chunks.append(embed(batch, resolution).float().cpu())
    return torch.cat(chunks)


def aggregate_accuracies(
    evaluator: Evaluator,
    paths: Mapping[str, EmbedFn],
    trunk: Callable[[Tensor], Tensor],
    resolutions: Iterable[int],
) -> dict[int, dict[str, VerificationResult]]:
    """Verification on features aggregated across resolutions, per ``b`` and per path.

    BTNet's aggregation: each face's feature is ``trunk(face at 112) + path(flipped face at
    b)``, L2-normalised; both faces of a pair get the feature at the same ``b``. The sum takes
    the place of the flip test.

    Args:
        evaluator: Holds the pairs and their inputs at 112 and at every ``b``.
        paths: The embedding paths by name.
        trunk: Embeds 112x112 faces.
        resolutions: The values of ``b``.

    Returns:
        ``{b: {path: result}}``, each result's protocol :func:`aggregate_protocol`.
    """
    hr = evaluator.inputs[TRUNK_INPUT]
    first = _raw_embeddings(evaluator, lambda x, r: trunk(x), hr, TRUNK_INPUT)
    protocol = aggregate_protocol(evaluator.folds)
    out: dict[int, dict[str, VerificationResult]] = {}
    for b in resolutions:
        flipped = torch.flip(evaluator.inputs[b], dims=[3])
        out[b] = {}
        for name, embed in paths.items():
            second = _raw_embeddings(evaluator, embed, flipped, b)
            features = torch.nn.functional.normalize(first + second, dim=1).numpy()
            result = verification_accuracy(
                features[evaluator.pairs.idx1],
                features[evaluator.pairs.idx2],
                evaluator.pairs.issame,
                n_folds=evaluator.folds,
                flip_test=False,
            )
            out[b][name] = dataclasses.replace(result, protocol=protocol)
    return out


#: Faces for :class:`FaceEmbedder`: a uint8 ``(N, 112, 112, 3)`` array, or a sequence of uint8
#: images of any size (native-size probes), fitted to 112 a chunk at a time.
Faces = np.ndarray | Sequence[np.ndarray]


class FaceEmbedder:
    """Embeds faces through a run's paths, each probe degraded to its resolution first.

    Every low-resolution input comes from :func:`~btnet_core.degrade.degrade` with one
    degradation, applied to the face at 112. The paths of one call see identical inputs: the
    noise of a chunk comes from a generator seeded by ``(seed, resolution, chunk)``, so the
    branch and the baseline compare on the same pixels and a rerun gives the same numbers.
    """

    def __init__(
        self,
        run: Run,
        degradation: Degradation,
        *,
        flip: bool = True,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        self.run = run
        self.degradation = degradation
        self.flip = flip
        self.batch_size = batch_size
        self.seed = seed

    @staticmethod
    def _at_trunk_size(faces: Faces, index: np.ndarray) -> np.ndarray:
        if isinstance(faces, np.ndarray):
            return faces[index]
        return np.stack([fit_face(faces[int(i)]) for i in index])

    @torch.no_grad()
    def _embed(self, embed: EmbedFn, x: Tensor, resolution: int) -> Tensor:
        chunks = []
        for start in range(0, len(x), self.batch_size):
            batch = x[start : start + self.batch_size].to(self.run.device)
            e = embed(batch, resolution).float()
            if self.flip:
                e = e + embed(torch.flip(batch, dims=[3]), resolution).float()
            chunks.append(torch.nn.functional.normalize(e, dim=1).cpu())
        return torch.cat(chunks)

    def gallery(self, faces: Faces) -> np.ndarray:
        """L2-normalised embeddings of faces at 112 through the trunk (flip test if set)."""
        return self._embed_faces(faces, TRUNK_INPUT, lambda x, r: self.run.trunk(x))

    def probes(self, faces: Faces, resolution: int | np.ndarray, path: str) -> np.ndarray:
        """L2-normalised embeddings of faces degraded to ``resolution`` through ``path``.

        Args:
            faces: The faces (see :data:`Faces`).
            resolution: One resolution for all, or one per face (routed probes).
            path: A name in ``run.paths``.

        Returns:
            ``(N, D)`` float32, in the order of ``faces``.
        """
        return self._embed_faces(faces, resolution, self.run.paths[path])

    def _embed_faces(
        self, faces: Faces, resolution: int | np.ndarray, embed: EmbedFn
    ) -> np.ndarray:
        n = len(faces)
        if n == 0:
            raise DataError("no faces to embed")
        per_face = np.broadcast_to(np.asarray(resolution, dtype=np.int64), (n,))
        out: np.ndarray | None = None
        for r in np.unique(per_face):
            r = int(r)
            members = np.flatnonzero(per_face == r)
            for chunk, start in enumerate(range(0, len(members), _CHUNK)):
                index = members[start : start + _CHUNK]
                hr = to_tensor(self._at_trunk_size(faces, index))
                gen = torch.Generator().manual_seed(
                    int(np.random.SeedSequence([self.seed, r, chunk]).generate_state(1)[0])
                )
                x = degrade(hr, r, self.degradation, generator=gen)
                e = self._embed(embed, x, r).numpy()
                if out is None:
                    out = np.empty((n, e.shape[1]), dtype=np.float32)
                out[index] = e
        assert out is not None
        return out


def identification(
    embedder: FaceEmbedder,
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    probes: Faces,
    probe_ids: np.ndarray,
    resolution: int | np.ndarray,
    ks: Sequence[int] = (1, 5, 10, 20),
) -> dict[str, RankResult]:
    """Closed-set identification (CMC at ``ks``) of probes at ``resolution``, per path.

    Args:
        embedder: Embeds the probes.
        gallery: Gallery embeddings (e.g. :meth:`FaceEmbedder.gallery`), one identity prototype
            per id (the mean of its embeddings).
        gallery_ids: Their identity ids.
        probes: The probe faces.
        probe_ids: Their identity ids, each a gallery id.
        resolution: One probe resolution, or one per probe.
        ks: Ranks of the CMC.

    Returns:
        ``{path: result}``.
    """
    return {
        path: rank_k(
            gallery, gallery_ids, embedder.probes(probes, resolution, path), probe_ids, ks
        )
        for path in embedder.run.paths
    }


def open_set(
    embedder: FaceEmbedder,
    gallery: np.ndarray,
    gallery_ids: np.ndarray,
    mated: Faces,
    mated_ids: np.ndarray,
    unmated: Faces,
    mated_resolution: int | np.ndarray,
    unmated_resolution: int | np.ndarray,
    *,
    fpirs: Sequence[float] = (0.3, 0.2, 0.1, 0.01),
    rank: int = 20,
    sweep: str = "exact",
) -> dict[str, OpenSetResult]:
    """Open-set identification (TPIR at FPIR targets, AUC) per path, as in QMUL-SurvFace.

    Args:
        embedder: Embeds the probes.
        gallery: Gallery embeddings; each identity is the prototype of its embeddings.
        gallery_ids: Their identity ids.
        mated: Probes of enrolled identities.
        mated_ids: Their identity ids.
        unmated: Probes of identities outside the gallery.
        mated_resolution: One resolution for the mated probes, or one per probe.
        unmated_resolution: The same for the unmated probes.
        fpirs: FPIR targets.
        rank: The rank cut-off (TPIR20: 20).
        sweep: See :func:`~btnet_core.metrics.tpir_at_fpir`.

    Returns:
        ``{path: result}``.
    """
    out: dict[str, OpenSetResult] = {}
    for path in embedder.run.paths:
        out[path] = tpir_at_fpir(
            gallery,
            gallery_ids,
            embedder.probes(mated, mated_resolution, path),
            mated_ids,
            embedder.probes(unmated, unmated_resolution, path),
            fpirs,
            rank,
            sweep=sweep,
        )
    return out
