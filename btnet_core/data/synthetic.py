"""Synthetic face identities: the built-in dataset every command runs on by default.

The set exists so that the branch-versus-upsample question can be asked without downloading
anything, and it is built to make that question real: identity lives mostly at FINE spatial
scale, which a 14x14 or 7x7 face no longer holds.

Each identity is a procedurally drawn face (head oval, ears, neck, hair, eyes with irises and
lids, eyebrows, nose, mouth) in a canonical frame, made of two kinds of parameters:

* coarse geometry and colour (head shape, skin and hair tone, hairline, where the eyes, nose
  and mouth sit): each identity takes it from one of ``NUM_PROTOTYPES`` shared prototypes plus
  a small jitter, so many identities look alike at low resolution;
* fine detail, which carries most of the identity: a skin texture of random gratings with
  periods of 3.2-12 pixels (at 112x112; mostly kept at 56, partly at 28, gone at 14 and 7),
  moles and marks 1-2 pixels wide, an oriented hair texture, and eye, iris, eyebrow, nostril
  and mouth shapes and offsets of one to three pixels.

Each image adds nuisance that a recogniser must ignore, most of it at coarse scale so that a
low-resolution face cannot fall back on coarse cues: residual alignment jitter (shift 0.7 px,
rotation 1.7 degrees, scale 2%, all std), a sub-pixel non-rigid wobble, pose and expression
(the inner face moving against the outline, smile, raised eyebrows; 1-2 px), directional light
on the head's ellipsoid with a random ambient share, a smooth random light field, a background
of random colour and gradient, brightness, gamma, colour cast and sensor noise. All lengths
are in units of half the image side, so ``size`` changes the sampling of the same faces, not
the faces.

Measured on 100 identities x 6 images (seed 11, chance 0.8%), faces degraded to r and
upsampled back, rank-1 nearest neighbour by cosine: a shift-tolerant gradient-histogram
descriptor finds the identity in 0.94 of faces at 112 and 0.84, 0.36, 0.10, 0.03 at 56, 28,
14, 7; raw pixels in 0.24 at 112, falling to 0.15, 0.08, 0.05, 0.03. Low resolution is not
information-free (as with real faces): a whitened PCA learnt on 100 other identities reaches
0.43 at 14x14 and 0.20 at 7x7. tests/btnet_core/data/test_synthetic.py checks the same
ordering on a smaller set.

Reproducibility: identity ``k`` is a function of ``(seed, k)`` only and image ``j`` of identity
``k`` of ``(seed, k, j)`` only (each draws from its own ``numpy`` seed sequence), so adding
identities or images never changes the ones already there. Results are bitwise reproducible
on one platform and library version; other platforms may round a pixel differently.

Generation is vectorised (parameters drawn with numpy, faces rendered in small batches with
torch on one thread): 2000 faces of 112x112 took 3-4 s on one core of a busy 2-core machine.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from btnet_core.errors import ConfigError

__all__ = ["NUM_PROTOTYPES", "synthetic_faces"]

logger = logging.getLogger(__name__)

#: Number of shared coarse prototypes; identities with the same one differ coarsely only by a
#: small jitter.
NUM_PROTOTYPES = 6

# Seed-sequence tags, so that identity, image and prototype streams never coincide.
_TAG_IDENTITY, _TAG_IMAGE, _TAG_PROTOTYPE = 0, 1, 2
# Number of random gratings in the skin and in the hair texture of one identity.
_SKIN_GRATINGS, _HAIR_GRATINGS = 48, 24
_MAX_MARKS = 16
# Identities rendered per call and images warped per call: batches this small keep their
# arrays (a few MB at 112x112) in cache, which makes them several times faster than large ones.
_IDENTITY_BATCH, _IMAGE_BATCH = 16, 32


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded inside the block and restore the thread count after it.

    Rendering is many small tensor operations. With two intra-op threads on a busy 2-core
    machine, OpenMP's synchronisation made it 5-10x slower (200 faces: 1.1 s with one thread,
    5-11 s with two), and on an idle machine two threads gain little at these sizes. NOTE: the
    thread count is process-wide, so torch work in another Python thread at the same moment
    also runs single-threaded meanwhile.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _rng(seed: int, tag: int, a: int, b: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(tag, a, b)))


def _prototypes(seed: int) -> dict[str, np.ndarray]:
    """The shared coarse prototypes, each a function of ``(seed, p)``."""
    rows = []
    for p in range(NUM_PROTOTYPES):
        rng = _rng(seed, _TAG_PROTOTYPE, p)
        tone = rng.uniform(0.0, 1.0)
        hair_lum = rng.uniform(0.06, 0.55)
        hair_hue = rng.uniform(0.0, 1.0)
        rows.append(
            {
                "head_a": rng.uniform(0.56, 0.66),
                "head_b": rng.uniform(0.74, 0.83),
                "skin": (1 - tone) * np.array([0.93, 0.79, 0.69])
                + tone * np.array([0.52, 0.36, 0.27]),
                # Hair from black/brown (hue 0) to auburn/blond (hue 1).
                "hair": hair_lum
                * np.array([1.0 + 0.5 * hair_hue, 0.8 + 0.3 * hair_hue, 0.6 - 0.1 * hair_hue]),
                "hairline": rng.uniform(-0.55, -0.40),
                "hair_curve": rng.uniform(0.15, 0.55),
                "hair_pad": rng.uniform(0.03, 0.10),
                "eye_y": rng.uniform(-0.15, -0.07),
                "eye_dx": rng.uniform(0.24, 0.30),
                "nose_y": rng.uniform(0.17, 0.25),
                "mouth_y": rng.uniform(0.37, 0.46),
                "mouth_w": rng.uniform(0.15, 0.22),
            }
        )
    return {key: np.array([row[key] for row in rows]) for key in rows[0]}


def _identity_params(seed: int, k: int, protos: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All parameters of identity ``k``; the draw order is fixed, so only (seed, k) matters."""
    rng = _rng(seed, _TAG_IDENTITY, k)
    p = int(rng.integers(NUM_PROTOTYPES))
    c = {key: value[p] for key, value in protos.items()}
    j = rng.normal  # small coarse jitter around the prototype
    out: dict[str, np.ndarray] = {
        "head_a": c["head_a"] + j(0, 0.008),
        "head_b": c["head_b"] + j(0, 0.008),
        "head_cy": 0.06 + j(0, 0.005),
        "skin": np.clip(c["skin"] + j(0, 0.012, 3), 0, 1),
        "hair": np.clip(c["hair"] + j(0, 0.012, 3), 0, 1),
        "hairline": c["hairline"] + j(0, 0.01),
        "hair_curve": c["hair_curve"] + j(0, 0.03),
        "hair_pad": c["hair_pad"] + j(0, 0.005),
        "eye_y": c["eye_y"] + j(0, 0.006),
        "eye_dx": c["eye_dx"] + j(0, 0.006),
        "nose_y": c["nose_y"] + j(0, 0.006),
        "mouth_y": c["mouth_y"] + j(0, 0.006),
        "mouth_w": c["mouth_w"] + j(0, 0.006),
    }
    # Fine landmark detail: offsets of one to three pixels at 112, each eye on its own.
    out["eye_off"] = rng.normal(0, 0.022, (2, 2))  # (side, xy)
    out["eye_w"] = rng.uniform(0.080, 0.110, 2)
    out["eye_h"] = rng.uniform(0.028, 0.045, 2)
    out["iris_off"] = rng.normal(0, 0.010, (2, 2))
    out["iris_r"] = rng.uniform(0.030, 0.046)
    iris_kind = rng.integers(4)  # brown, dark brown, blue-grey, green
    iris = np.array([[0.40, 0.25, 0.13], [0.22, 0.13, 0.07], [0.35, 0.45, 0.55], [0.3, 0.4, 0.25]])
    out["iris"] = np.clip(iris[iris_kind] + rng.normal(0, 0.04, 3), 0, 1)
    out["brow_gap"] = rng.uniform(0.07, 0.12, 2)
    out["brow_thick"] = rng.uniform(0.015, 0.040)
    out["brow_len"] = rng.uniform(0.09, 0.14)
    out["brow_tilt"] = rng.normal(0, 0.15, 2)
    out["brow_arch"] = rng.uniform(0.0, 0.05)
    out["nostril_dx"] = rng.uniform(0.04, 0.07)
    out["nostril_r"] = rng.uniform(0.012, 0.022, 2)
    out["mouth_off"] = rng.normal(0, 0.015, 2)  # (x, y) of the mouth centre
    out["mouth_tilt"] = rng.normal(0, 0.04)
    out["lip_h"] = rng.uniform(0.018, 0.038, 2)  # upper, lower
    out["mouth_curve"] = rng.normal(0, 0.025)
    # Skin texture: gratings with log-uniform periods of 3.2-12 px (at 112) in all directions:
    # mostly kept at 56x56, partly at 28x28 (whose pixel is 4 px), gone at 14x14 and 7x7.
    periods = np.exp(rng.uniform(math.log(3.2 / 56), math.log(12 / 56), _SKIN_GRATINGS))
    angles = rng.uniform(0, math.pi, _SKIN_GRATINGS)
    out["skin_w"] = (2 * math.pi / periods)[:, None] * np.stack(
        [np.cos(angles), np.sin(angles)], 1
    )
    out["skin_phase"] = rng.uniform(0, 2 * math.pi, _SKIN_GRATINGS)
    out["skin_amp"] = rng.uniform(0.5, 1.0, _SKIN_GRATINGS)
    out["skin_tex"] = rng.uniform(0.07, 0.11)
    # Hair texture: strands along one identity-specific direction, periods 3-8 px.
    hair_dir = rng.uniform(0, math.pi)
    periods = rng.uniform(3.0 / 56, 8.0 / 56, _HAIR_GRATINGS)
    angles = hair_dir + rng.normal(0, 0.25, _HAIR_GRATINGS)
    out["hair_w"] = (2 * math.pi / periods)[:, None] * np.stack(
        [np.cos(angles), np.sin(angles)], 1
    )
    out["hair_phase"] = rng.uniform(0, 2 * math.pi, _HAIR_GRATINGS)
    out["hair_amp"] = rng.uniform(0.5, 1.0, _HAIR_GRATINGS)
    # Moles and marks, placed inside the face oval; unused slots have amplitude 0.
    n_marks = int(rng.integers(5, _MAX_MARKS + 1))
    radius = np.sqrt(rng.uniform(0, 1, _MAX_MARKS)) * 0.85
    angle = rng.uniform(0, 2 * math.pi, _MAX_MARKS)
    out["mark_xy"] = np.stack(
        [
            radius * np.cos(angle) * out["head_a"],
            radius * np.sin(angle) * out["head_b"] + out["head_cy"],
        ],
        1,
    )
    out["mark_sigma"] = rng.uniform(0.011, 0.022, _MAX_MARKS)  # 0.6-1.2 px at 112
    amp = rng.uniform(0.15, 0.45, _MAX_MARKS) * np.where(rng.uniform(size=_MAX_MARKS) < 0.8, -1, 1)
    amp[n_marks:] = 0.0
    out["mark_amp"] = amp
    return out


# Rendering works on torch float32 tensors (channels first); it is several times faster than
# float64 numpy on the full-image blends and uses the process's torch threads.


def _smooth_step(signed_distance: Tensor, pixel: float) -> Tensor:
    """Anti-aliased inside-mask from a signed distance (positive inside), about 1 px wide."""
    return (signed_distance / pixel + 0.5).clamp_(0.0, 1.0)


def _ellipse(x: Tensor, y: Tensor, cx, cy, a, b, pixel: float) -> Tensor:
    """Soft mask of the ellipse with centre (cx, cy) and semi-axes (a, b); all broadcast."""
    r = torch.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
    return _smooth_step((1.0 - r) * torch.minimum(torch.as_tensor(a), torch.as_tensor(b)), pixel)


def _paint(canvas: Tensor, mask: Tensor, colour: Tensor | float) -> Tensor:
    """Blend ``colour`` (broadcast to (K, 3, N, N)) into ``canvas`` where ``mask`` is 1."""
    colour = torch.as_tensor(colour, dtype=canvas.dtype)
    return torch.lerp(canvas, colour.expand_as(canvas), mask.unsqueeze(1))


def _gratings(x1: Tensor, w: Tensor, phase: Tensor, amp: Tensor) -> Tensor:
    """Sum of gratings ``amp * sin(w . (x, y) + phase)`` on the square grid, unit std, (K, N, N).

    Separable: ``sin(wx x + wy y + p) = sin(wx x) cos(wy y + p) + cos(wx x) sin(wy y + p)``, so
    the sum over M gratings is one batched matrix product instead of M full-grid sines.
    """
    wx, wy = w[..., 0].unsqueeze(1), w[..., 1].unsqueeze(1)  # (K, 1, M)
    xs = x1.view(1, -1, 1)
    amp2 = torch.cat([amp, amp], dim=1).unsqueeze(1)
    u = torch.cat([torch.sin(wx * xs), torch.cos(wx * xs)], dim=2) * amp2  # (K, x, 2M)
    arg = wy * xs + phase.unsqueeze(1)
    v = torch.cat([torch.cos(arg), torch.sin(arg)], dim=2)  # (K, y, 2M)
    field = v @ u.transpose(1, 2)  # (K, y, x)
    return field / torch.sqrt(0.5 * (amp**2).sum(dim=1)).view(-1, 1, 1)


def _marks(params: dict[str, np.ndarray], n: int) -> Tensor:
    """Multiplicative mole/mark field (K, N, N): Gaussian dots rendered only near each dot."""
    k, per_id = params["mark_amp"].shape
    pixel = 2.0 / n
    xy = params["mark_xy"].reshape(-1, 2)
    sigma = params["mark_sigma"].reshape(-1)
    amp = params["mark_amp"].reshape(-1)
    owner = np.repeat(np.arange(k), per_id)
    centre = (xy + 1.0) / pixel - 0.5  # pixel coordinates
    radius = int(math.ceil(3.0 * float(sigma.max()) / pixel))
    off = np.arange(-radius, radius + 1)
    px = np.round(centre[:, 0])[:, None, None] + off[None, None, :]
    py = np.round(centre[:, 1])[:, None, None] + off[None, :, None]
    d2 = (px - centre[:, 0, None, None]) ** 2 + (py - centre[:, 1, None, None]) ** 2
    values = amp[:, None, None] * np.exp(-0.5 * d2 * (pixel / sigma[:, None, None]) ** 2)
    px, py = np.broadcast_arrays(px, py)
    inside = (px >= 0) & (px < n) & (py >= 0) & (py < n)
    flat = (owner[:, None, None] * n + py) * n + px
    field = np.bincount(flat[inside].astype(np.int64), values[inside], minlength=k * n * n)
    return torch.from_numpy(field.reshape(k, n, n).astype(np.float32))


def _grid(n: int) -> Tensor:
    """Pixel-centre coordinates in [-1, 1] (``grid_sample``'s ``align_corners=False``)."""
    return (torch.arange(n, dtype=torch.float32) + 0.5) * (2.0 / n) - 1.0


@torch.no_grad()
def _render_identities(params: dict[str, np.ndarray], n: int) -> Tensor:
    """Canonical face of each identity: (K, 7, N, N) float32: RGB albedo, alpha, surface normal.

    The normal is that of an ellipsoid around the head (hair included), for per-image lighting.
    """
    t = {
        key: torch.from_numpy(np.asarray(value, dtype=np.float32)) for key, value in params.items()
    }
    k = t["head_a"].shape[0]
    pixel = 2.0 / n
    x1 = _grid(n)
    x, y = x1.view(1, 1, n), x1.view(1, n, 1)

    def p(name: str, *index: int) -> Tensor:
        """A per-identity scalar (optionally indexed) shaped (K, 1, 1) for the grid."""
        value = t[name]
        for i in index:
            value = value[:, i]
        return value.view(k, 1, 1)

    def colour(name: str) -> Tensor:
        return t[name].view(k, 3, 1, 1)

    a, b, cy = p("head_a"), p("head_b"), p("head_cy")
    skin = colour("skin")
    canvas = torch.zeros(k, 3, n, n)
    # Neck and ears sit behind the face.
    neck = _smooth_step(torch.minimum(0.27 - x.abs(), y - cy - 0.35), pixel).expand(k, n, n)
    canvas = _paint(canvas, neck, skin * 0.8)
    ears = torch.maximum(
        _ellipse(x, y, -(a - 0.01), p("eye_y") + 0.12, 0.07, 0.14, pixel),
        _ellipse(x, y, a - 0.01, p("eye_y") + 0.12, 0.07, 0.14, pixel),
    )
    canvas = _paint(canvas, ears, skin * 0.9)
    face = _ellipse(x, y, 0.0, cy, a, b, pixel)
    texture = _gratings(x1, t["skin_w"], t["skin_phase"], t["skin_amp"])
    modulation = (1.0 + p("skin_tex") * texture) * (1.0 + _marks(params, n))
    canvas = _paint(canvas, face, skin * modulation.unsqueeze(1))

    # Eyes: socket shadow, lid line, sclera, iris, pupil; each eye has its own offsets.
    dark_hair = colour("hair")
    for i, side in enumerate((-1.0, 1.0)):
        ex = side * p("eye_dx") + p("eye_off", i, 0)
        ey = p("eye_y") + p("eye_off", i, 1)
        ew, eh = p("eye_w", i), p("eye_h", i)
        socket = _ellipse(x, y, ex, ey - 0.01, ew * 1.5, eh * 2.6, 4 * pixel)
        canvas = canvas * (1.0 - 0.12 * socket.unsqueeze(1))
        lid = _ellipse(x, y, ex, ey - 0.004, ew * 1.12, eh * 1.35, pixel) * (y < ey)
        canvas = _paint(canvas, lid, dark_hair * 0.6)
        eye = _ellipse(x, y, ex, ey, ew, eh, pixel)
        canvas = _paint(canvas, eye, torch.tensor([0.92, 0.90, 0.86]).view(1, 3, 1, 1))
        ix, iy, r = ex + p("iris_off", i, 0), ey + p("iris_off", i, 1), p("iris_r")
        canvas = _paint(canvas, _ellipse(x, y, ix, iy, r, r, pixel) * eye, colour("iris"))
        canvas = _paint(canvas, _ellipse(x, y, ix, iy, r * 0.45, r * 0.45, pixel) * eye, 0.03)
        # Eyebrow: a tapered arc above the eye, tilted per side.
        tilt = side * p("brow_tilt", i)
        length, thick = p("brow_len"), p("brow_thick")
        du, dv = x - ex, y - (ey - p("brow_gap", i))
        u = du * torch.cos(tilt) + dv * torch.sin(tilt)
        v = -du * torch.sin(tilt) + dv * torch.cos(tilt)
        arch = -p("brow_arch") * (1.0 - (u / length) ** 2)
        half = 0.5 * thick * (1.0 - 0.45 * (side * u / length + 1.0) / 2.0)
        brow = _smooth_step(torch.minimum(half - (v - arch).abs(), length - u.abs()), pixel)
        canvas = _paint(canvas, brow, dark_hair * 0.9)

    # Nose: a faint bridge shadow, a lighter tip and two nostrils.
    ny = p("nose_y")
    bridge = torch.exp(-0.5 * ((x.abs() - 0.055) / 0.02) ** 2) * (y > p("eye_y")) * (y < ny)
    canvas = canvas * (1.0 - 0.10 * bridge.unsqueeze(1))
    tip = _ellipse(x, y, 0.0, ny - 0.04, 0.05, 0.04, 4 * pixel)
    canvas = canvas * (1.0 + 0.06 * tip.unsqueeze(1))
    for i, side in enumerate((-1.0, 1.0)):
        r = p("nostril_r", i)
        nostril = _ellipse(x, y, side * p("nostril_dx"), ny, r * 1.3, r, pixel)
        canvas = _paint(canvas, nostril, skin * 0.35)

    # Mouth: upper and lower lip and the line between them, slightly tilted and curved.
    mw = p("mouth_w")
    u = x - p("mouth_off", 0)
    line = p("mouth_y") + p("mouth_off", 1) + p("mouth_tilt") * u
    line = line + p("mouth_curve") * ((u / mw) ** 2 - 0.5)
    inside = (u.abs() < mw).float()
    width = (1.0 - (u / mw) ** 2).clamp(min=0.0).sqrt()
    upper, lower = p("lip_h", 0) * width, p("lip_h", 1) * width
    lips = _smooth_step(torch.minimum(y - (line - upper), (line + lower) - y), pixel) * inside
    canvas = _paint(canvas, lips, skin * torch.tensor([0.80, 0.52, 0.52]).view(1, 3, 1, 1))
    gap = _smooth_step(0.006 - (y - line).abs(), pixel) * inside
    canvas = _paint(canvas, gap, skin * 0.3)

    # A little fixed shading towards the outline; the per-image light does the rest.
    r2 = ((x / a) ** 2 + ((y - cy) / b) ** 2).clamp(0.0, 1.0)
    canvas = canvas * (1.0 - 0.12 * r2 * face).unsqueeze(1)

    # Hair: inside an oval a little larger than the head, above a curved hairline, and down
    # the sides outside the face.
    pad = p("hair_pad")
    hair_oval = _ellipse(x, y, 0.0, cy - 0.5 * pad, a + pad, b + pad, pixel)
    above = _smooth_step(p("hairline") + p("hair_curve") * x**2 - y, pixel)
    sides = (1.0 - face) * _smooth_step(cy + 0.05 - y, pixel)
    hair = hair_oval * torch.maximum(above, sides)
    strands = _gratings(x1, t["hair_w"], t["hair_phase"], t["hair_amp"])
    canvas = _paint(canvas, hair, dark_hair * (1.0 + 0.3 * strands).unsqueeze(1))

    alpha = torch.maximum(torch.maximum(face, hair), torch.maximum(ears, neck))
    # Ellipsoid normal: (u, v, sqrt(1 - u^2 - v^2)) normalised; outside the oval (neck, ear
    # tips) it bends away from the camera, so those parts fall into shade.
    u, v = x / (a + pad), (y - cy) / (b + pad)
    nz = (1.0 - u**2 - v**2).clamp(min=0.02).sqrt()
    length = (u**2 + v**2 + nz**2).sqrt()
    normal = torch.stack(
        [(u / length).expand(k, n, n), (v / length).expand(k, n, n), nz / length], 1
    )
    return torch.cat([canvas.clamp(0.0, 1.0), alpha.unsqueeze(1), normal], dim=1)


# Layout of the per-image nuisance vector.
_FIELD_WAVES = 6
_NUISANCE = (
    ("shift", 2),
    ("rotation", 1),
    ("log_scale", 1),
    ("wobble_amp", 2),
    ("wobble_freq", 2),
    ("wobble_phase", 2),
    ("pose", 2),
    ("smile", 1),
    ("brow_raise", 1),
    ("light_polar", 1),
    ("light_azimuth", 1),
    ("ambient", 1),
    ("field_freq", 2 * _FIELD_WAVES),
    ("field_phase", _FIELD_WAVES),
    ("field_amp", 1),
    ("brightness", 1),
    ("gamma", 1),
    ("cast", 3),
    ("background", 3),
    ("background_grad", 2),
    ("noise_std", 1),
)


def _image_nuisance(seed: int, k: int, j: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nuisance parameters (in ``_NUISANCE`` order) and raw sensor-noise bytes of image (k, j).

    Sensor noise is the sum of two uniform bytes per pixel and channel, a triangular
    distribution: far cheaper to draw than Gaussian noise and indistinguishable at 1-4 grey
    levels of std.
    """
    rng = _rng(seed, _TAG_IMAGE, k, j)
    values = np.concatenate(
        [
            rng.normal(0, 0.012, 2),  # shift: 0.7 px std at 112
            rng.normal(0, 0.03, 1),  # rotation in radians (1.7 degrees std)
            rng.normal(0, 0.02, 1),  # log scale
            rng.uniform(0.0, 0.008, 2),  # smooth non-rigid wobble: amplitude (x, y) ...
            rng.uniform(1.0, 2.5, 2) * math.pi,  # ... spatial frequency ...
            rng.uniform(0, 2 * math.pi, 2),  # ... and phase
            rng.normal(0, [0.025, 0.018]),  # pose: inner face moves against the outline
            rng.normal(0, 0.02, 1),  # smile (mouth corners up, or down when negative)
            rng.uniform(0.0, 0.025, 1),  # eyebrow raise
            rng.uniform(0.0, 1.0, 1),  # light: angle from the camera axis (radians) ...
            rng.uniform(0, 2 * math.pi, 1),  # ... its direction in the image plane ...
            rng.uniform(0.35, 0.75, 1),  # ... and the ambient share
            rng.normal(0, 1.5 * math.pi, 2 * _FIELD_WAVES),  # smooth light field: frequencies
            rng.uniform(0, 2 * math.pi, _FIELD_WAVES),  # its phases
            rng.uniform(0.0, 0.12, 1),  # its strength
            rng.uniform(0.80, 1.15, 1),  # brightness
            rng.uniform(0.85, 1.20, 1),  # gamma
            rng.normal(1.0, 0.03, 3),  # colour cast
            rng.uniform(0.15, 0.85, 1) * rng.normal(1.0, 0.08, 3),  # background colour
            rng.normal(0, 0.15, 2),  # background gradient
            rng.uniform(1.0, 4.0, 1) / 255.0,  # sensor noise std
        ]
    )
    noise = np.frombuffer(rng.bytes(2 * 3 * n * n), dtype=np.uint8).reshape(2, 3, n, n)
    return values, noise


def _expression_maps(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Where pose, smile and eyebrow raise act: (N, N) weights of the inner face, of the mouth
    corners (growing away from the mouth's centre) and of the eyebrows."""
    x1 = _grid(n)
    x, y = x1.view(1, n), x1.view(n, 1)
    inner = torch.exp(-((x / 0.42) ** 4 + ((y - 0.12) / 0.5) ** 4))
    mouth = (x / 0.2) ** 2 * torch.exp(-((x / 0.25) ** 2 + ((y - 0.42) / 0.1) ** 2))
    brows = torch.exp(-(((x.abs() - 0.27) / 0.12) ** 2 + ((y + 0.21) / 0.06) ** 2))
    return inner, mouth, brows


@torch.no_grad()
def _render_images(albedo: Tensor, nuisance: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Warp, light and expose canonical faces.

    Args:
        albedo: (B, 7, N, N) canonical faces of the images' identities.
        nuisance: (B, P) per-image parameters in ``_NUISANCE`` order.
        noise: (B, 2, 3, N, N) uint8 sensor-noise bytes.

    Returns:
        (B, N, N, 3) uint8 RGB images.
    """
    bsz, n = albedo.shape[0], albedo.shape[-1]
    nu: dict[str, Tensor] = {}
    offset = 0
    for name, width in _NUISANCE:
        part = torch.from_numpy(nuisance[:, offset : offset + width].astype(np.float32))
        nu[name] = part.view(bsz, width, 1, 1)
        offset += width
    x1 = _grid(n)
    x, y = x1.view(1, 1, 1, n), x1.view(1, 1, n, 1)
    # Output pixel -> canonical point: undo shift, rotation and scale, then a smooth wobble.
    xs, ys = x - nu["shift"][:, :1], y - nu["shift"][:, 1:]
    rot, scale = nu["rotation"], torch.exp(nu["log_scale"])
    cx = (torch.cos(rot) * xs + torch.sin(rot) * ys) / scale
    cy = (-torch.sin(rot) * xs + torch.cos(rot) * ys) / scale
    amp, freq, phase = nu["wobble_amp"], nu["wobble_freq"], nu["wobble_phase"]
    cx = cx + amp[:, :1] * torch.sin(freq[:, :1] * y + phase[:, :1])
    cy = cy + amp[:, 1:] * torch.sin(freq[:, 1:] * x + phase[:, 1:])
    # Expression and pose move features against the head outline (a feature displaced by d is
    # sampled at c - d): the inner face as a whole, the mouth corners, the eyebrows. The
    # regions they act on are fixed maps in output coordinates, shared by all images; they are
    # smooth, so the pixel or so of per-image shift between output and canonical frame is
    # immaterial.
    inner, mouth, brows = _expression_maps(n)
    pose = nu["pose"]
    dx = pose[:, :1] * inner
    dy = pose[:, 1:] * inner - nu["smile"] * mouth - nu["brow_raise"] * brows
    grid = torch.cat([cx - dx, cy - dy], dim=1).permute(0, 2, 3, 1)  # (B, N, N, 2)
    warped = F.grid_sample(
        albedo, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    rgb, alpha, normal = warped[:, :3], warped[:, 3:4], warped[:, 4:]

    # Directional light on the head ellipsoid plus ambient light. NOTE: the normals are not
    # rotated with the in-plane rotation; at a few degrees the error is invisible.
    polar, azimuth, ambient = nu["light_polar"], nu["light_azimuth"], nu["ambient"]
    light = torch.cat(
        [
            torch.sin(polar) * torch.cos(azimuth),
            torch.sin(polar) * torch.sin(azimuth),
            torch.cos(polar),
        ],
        dim=1,
    )
    diffuse = (normal * light).sum(dim=1, keepdim=True).clamp(min=0.0)
    rgb = rgb * (ambient + (1.0 - ambient) * diffuse)
    grad = nu["background_grad"]
    background = nu["background"] * (1.0 + grad[:, :1] * x + grad[:, 1:] * y)
    image = torch.lerp(background.clamp(0.0, 1.0), rgb, alpha)
    # A smooth random light field over the whole image (reflections, soft shadows): a sum of
    # plane waves, separable as cos(a + b) = cos a cos b - sin a sin b, so one matrix product.
    fxy = nu["field_freq"].view(bsz, 1, _FIELD_WAVES, 2)
    along_x = fxy[..., 0] * x1.view(1, n, 1)  # (B, N, W)
    along_y = fxy[..., 1] * x1.view(1, n, 1) + nu["field_phase"].view(bsz, 1, _FIELD_WAVES)
    u = torch.cat([torch.cos(along_x), torch.sin(along_x)], dim=2)
    v = torch.cat([torch.cos(along_y), -torch.sin(along_y)], dim=2)
    waves = (v @ u.transpose(1, 2)).unsqueeze(1)  # (B, 1, y, x)
    field = 1.0 + nu["field_amp"] * waves / math.sqrt(_FIELD_WAVES / 2)
    image = image * (nu["brightness"] * field) * nu["cast"]
    # x ** gamma as exp(gamma * log x): the same values, three times faster than pow here.
    image = torch.exp(torch.log(image.clamp(1e-6, 1.0)) * nu["gamma"])
    sensor = torch.from_numpy(noise[:, 0].astype(np.int16) + noise[:, 1] - 255).float()
    image = image + (nu["noise_std"] / 104.5) * sensor  # 104.5: std of the sum of two bytes
    out = (image.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous().numpy()


def synthetic_faces(
    num_identities: int, images_per_identity: int, size: int = 112, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a labelled set of synthetic faces.

    Args:
        num_identities: Number of identities ``K``.
        images_per_identity: Images of each identity.
        size: Side length of the (square) images; 112 is the trunk's resolution.
        seed: Non-negative seed; identity ``k`` depends only on ``(seed, k)``, its image ``j``
            only on ``(seed, k, j)``.

    Returns:
        ``(images, labels)``: uint8 ``(K * images_per_identity, size, size, 3)`` RGB images,
        identity-major (all images of identity 0 first), and int64 labels ``0..K-1``.

    Raises:
        ConfigError: A count, the size or the seed is out of range.
    """
    for name, value, low in (
        ("num_identities", num_identities, 1),
        ("images_per_identity", images_per_identity, 1),
        ("size", size, 16),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(
                f"synthetic faces: {name} must be an integer >= {low}, got {value!r}"
            )
    num_identities, images_per_identity = int(num_identities), int(images_per_identity)
    size, seed = int(size), int(seed)
    total = num_identities * images_per_identity
    logger.info(
        "generating %d synthetic faces (%d identities x %d, %dx%d, seed %d)",
        total,
        num_identities,
        images_per_identity,
        size,
        size,
        seed,
    )
    protos = _prototypes(seed)
    images = np.empty((total, size, size, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(num_identities, dtype=np.int64), images_per_identity)
    with _one_torch_thread():
        _fill(images, protos, num_identities, images_per_identity, size, seed)
    return images, labels


def _fill(
    images: np.ndarray,
    protos: dict[str, np.ndarray],
    num_identities: int,
    images_per_identity: int,
    size: int,
    seed: int,
) -> None:
    """Render all images into ``images``, identity by identity in small batches."""
    for start in range(0, num_identities, _IDENTITY_BATCH):
        ks = range(start, min(start + _IDENTITY_BATCH, num_identities))
        per_id = [_identity_params(seed, k, protos) for k in ks]
        params = {key: np.stack([q[key] for q in per_id]) for key in per_id[0]}
        albedo = _render_identities(params, size)
        pairs = [(i, k, j) for i, k in enumerate(ks) for j in range(images_per_identity)]
        for b0 in range(0, len(pairs), _IMAGE_BATCH):
            batch = pairs[b0 : b0 + _IMAGE_BATCH]
            drawn = [_image_nuisance(seed, k, j, size) for _, k, j in batch]
            nuisance = np.stack([d[0] for d in drawn])
            noise = np.stack([d[1] for d in drawn])
            faces = albedo[torch.tensor([i for i, _, _ in batch])]
            first = start * images_per_identity + b0
            images[first : first + len(batch)] = _render_images(faces, nuisance, noise)
