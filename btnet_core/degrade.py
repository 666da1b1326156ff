"""The one degradation function that makes every low-resolution input.

BTNet's results depend on how a 112x112 face becomes a 7x7, 14x14 or 28x28 one. The authors'
code resizes with a different kernel at different steps (PIL bilinear, tensor bilinear with and
without antialias, OpenCV bilinear, PIL bicubic), so a branch can be trained on one kind of
low-resolution image and evaluated on another. Here training and evaluation both call
:func:`degrade` with one :class:`Degradation` spec, so the kernel is a recorded choice of the
experiment, not an accident of the code path.

Pipeline, in this order (a camera's order: optics, sampling, sensor, encoder):

1. Gaussian blur of the high-resolution image (``blur_sigma``, in HR pixels);
2. downsampling to ``size x size`` with the chosen kernel;
3. additive Gaussian noise (``noise_std``, in the [-1, 1] scale), then clipping to [-1, 1];
4. a JPEG round trip at the low resolution (``jpeg_quality``).

Images are float NCHW tensors in [-1, 1], InsightFace's normalisation ``(x / 255 - 0.5) / 0.5``;
:func:`to_tensor` makes them from uint8 arrays. :func:`upsample` is the upsample-to-112 baseline
(the low-resolution probe interpolated back up and fed to the trunk).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from btnet_core.config import DOWNSAMPLE_KERNELS
from btnet_core.errors import ConfigError

__all__ = [
    "DOWNSAMPLE_KERNELS",
    "UPSAMPLE_KERNELS",
    "Degradation",
    "degrade",
    "to_tensor",
    "upsample",
]

#: Kernels :func:`degrade` can downsample with: DOWNSAMPLE_KERNELS (defined in
#: btnet_core.config, which validates them without importing torch).
#: Kernels :func:`upsample` can interpolate with.
UPSAMPLE_KERNELS: tuple[str, ...] = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class Degradation:
    """How a high-resolution face becomes a low-resolution one.

    Attributes:
        kernel: Downsampling kernel: ``area`` (the mean of each block of HR pixels; for the
            integer factors 112 -> 56/28/14/7 exactly a block mean), ``bilinear`` or ``bicubic``.
        antialias: For ``bilinear`` and ``bicubic``: widen the kernel by the downsampling factor
            (as PIL does). Without it a 16x bilinear downsampling reads only 4 of every 256
            pixels and aliases badly; that is what some code paths of the reference do.
        blur_sigma: Standard deviation of a Gaussian blur applied before downsampling, in HR
            pixels; 0 turns it off. It stands for the optics of a camera that sees a face small.
        noise_std: Standard deviation of additive Gaussian noise after downsampling, in the
            [-1, 1] scale (1/127.5 is one grey level); 0 turns it off.
        jpeg_quality: JPEG quality (1-100) of a round trip at the low resolution, with PIL's
            default 4:2:0 chroma subsampling; ``None`` turns it off.
    """

    kernel: str = "area"
    antialias: bool = True
    blur_sigma: float = 0.0
    noise_std: float = 0.0
    jpeg_quality: int | None = None

    def __post_init__(self) -> None:
        if self.kernel not in DOWNSAMPLE_KERNELS:
            raise ConfigError(
                f"degradation.kernel: {self.kernel!r} is not allowed; "
                f"allowed: {', '.join(DOWNSAMPLE_KERNELS)}"
            )
        if not isinstance(self.antialias, bool):
            raise ConfigError(
                f"degradation.antialias: must be true or false, got {self.antialias!r}"
            )
        for key in ("blur_sigma", "noise_std"):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ConfigError(f"degradation.{key}: must be a number >= 0, got {value!r}")
        q = self.jpeg_quality
        if q is not None and (isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 100):
            raise ConfigError(
                f"degradation.jpeg_quality: must be an integer in 1..100 or null, got {q!r}"
            )


def degrade(
    images: Tensor,
    size: int,
    spec: Degradation = Degradation(),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Degrade square high-resolution faces to ``size x size``.

    Args:
        images: Float tensor ``(N, C, H, H)`` in [-1, 1], with ``H >= size``.
        size: Output side length.
        spec: The degradation.
        generator: Random source of the noise. Noise is drawn on the generator's device and
            moved to the images' device, so a CPU generator gives the same noise for CPU and
            GPU images. Without one, the global RNG of the images' device is used.

    Returns:
        ``(N, C, size, size)`` tensor of the input's dtype, in [-1, 1]. When ``size == H`` there
        is nothing to downsample: blur and kernel are skipped (the HR image stays the reference
        the trunk was trained on) and the input itself is returned unless noise or JPEG is set.

    Raises:
        ConfigError: ``size`` is not an integer in ``1..H``.
        ValueError: ``images`` is not a float ``(N, C, H, H)`` tensor (a caller bug).
    """
    if images.dim() != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"degrade: images must be (N, C, H, H), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"degrade: images must be float in [-1, 1] (see to_tensor), got {images.dtype}"
        )
    hr = images.shape[2]
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= hr:
        raise ConfigError(
            f"degrade: size must be an integer in 1..{hr} (the input size), got {size!r}"
        )
    if size == hr and spec.noise_std == 0 and spec.jpeg_quality is None:
        return images

    out_dtype = images.dtype
    # Resampling in half precision is not supported everywhere and loses grey levels.
    x = images if out_dtype in (torch.float32, torch.float64) else images.float()
    if size != hr:
        if spec.blur_sigma > 0:
            x = _gaussian_blur(x, spec.blur_sigma)
        x = _downsample(x, size, spec)
    if spec.noise_std > 0:
        device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype)
        x = (x + spec.noise_std * noise.to(x.device)).clamp(-1.0, 1.0)
    if spec.jpeg_quality is not None:
        x = _jpeg_round_trip(x, spec.jpeg_quality)
    return x.to(out_dtype)


def upsample(images: Tensor, size: int = 112, kernel: str = "bilinear") -> Tensor:
    """Interpolate low-resolution faces up to ``size x size`` (the upsample baseline).

    Args:
        images: Float tensor ``(N, C, h, h)`` in [-1, 1] with ``h <= size``.
        size: Output side length.
        kernel: ``nearest``, ``bilinear`` or ``bicubic`` (``align_corners=False``; bicubic
            overshoots, so its result is clipped to [-1, 1]).

    Returns:
        ``(N, C, size, size)`` tensor of the input's dtype; the input itself when ``h == size``.

    Raises:
        ConfigError: Unknown kernel, or ``size`` smaller than the input.
    """
    if kernel not in UPSAMPLE_KERNELS:
        raise ConfigError(
            f"upsample: kernel {kernel!r} is not allowed; allowed: {', '.join(UPSAMPLE_KERNELS)}"
        )
    if images.dim() != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"upsample: images must be (N, C, h, h), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"upsample: images must be float in [-1, 1], got {images.dtype}")
    lr = images.shape[2]
    if isinstance(size, bool) or not isinstance(size, int) or size < lr:
        raise ConfigError(
            f"upsample: size must be an integer >= the input size {lr} (use degrade to go "
            f"down), got {size!r}"
        )
    if size == lr:
        return images
    out_dtype = images.dtype
    x = images if out_dtype in (torch.float32, torch.float64) else images.float()
    if kernel == "nearest":
        # "nearest-exact" picks the pixel whose area covers the output centre (no half-pixel
        # shift, unlike legacy "nearest").
        y = F.interpolate(x, size=(size, size), mode="nearest-exact")
    else:
        y = F.interpolate(x, size=(size, size), mode=kernel, align_corners=False)
        if kernel == "bicubic":
            y = y.clamp(-1.0, 1.0)
    return y.to(out_dtype)


def to_tensor(images_uint8_nhwc: np.ndarray) -> Tensor:
    """Turn uint8 images into the float [-1, 1] NCHW tensors the networks take.

    Args:
        images_uint8_nhwc: ``(N, H, W, C)`` uint8 with ``C`` 1 or 3, or ``(N, H, W)`` greyscale.

    Returns:
        Float32 ``(N, 3, H, W)`` tensor, ``x / 127.5 - 1``; greyscale is repeated to 3 channels.
    """
    arr = np.asarray(images_uint8_nhwc)
    if arr.dtype != np.uint8:
        raise ValueError(f"to_tensor: images must be uint8, got {arr.dtype}")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[3] not in (1, 3):
        raise ValueError(
            f"to_tensor: images must be (N, H, W, C) with C 1 or 3, got {tuple(arr.shape)}"
        )
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float()
    t = t.div_(127.5).sub_(1.0)
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    return t.contiguous()


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (radius ``ceil(3 sigma)``, reflected borders) of NCHW ``x``."""
    radius = max(1, math.ceil(3.0 * sigma))
    # A reflected border needs the radius smaller than the image.
    radius = min(radius, x.shape[-1] - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(c, 1, 1, 1)
    y = F.conv2d(padded, horizontal, groups=c)
    return F.conv2d(y, vertical, groups=c)


def _downsample(x: Tensor, size: int, spec: Degradation) -> Tensor:
    if spec.kernel == "area":
        # For an integer factor this is the exact block mean. For a non-integer factor torch's
        # adaptive pooling averages windows of varying size that may overlap by a pixel, a
        # close but not exact area-weighted resampling.
        return F.adaptive_avg_pool2d(x, size)
    y = F.interpolate(
        x, size=(size, size), mode=spec.kernel, align_corners=False, antialias=spec.antialias
    )
    return y.clamp(-1.0, 1.0)


def _jpeg_round_trip(x: Tensor, quality: int) -> Tensor:
    """Encode each image as JPEG at ``quality`` with PIL and decode it (on the CPU)."""
    n, c = x.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"degrade: JPEG needs 1 or 3 channels, got {c}")
    pixels = ((x.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    pixels_np = pixels.permute(0, 2, 3, 1).numpy()
    decoded = np.empty_like(pixels_np)
    for i in range(n):
        image = Image.fromarray(pixels_np[i, :, :, 0] if c == 1 else pixels_np[i])
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as reread:
            arr = np.asarray(reread.convert("L" if c == 1 else "RGB"))
        decoded[i] = arr[..., None] if c == 1 else arr
    out = torch.from_numpy(decoded).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype)
    return out / 127.5 - 1.0
