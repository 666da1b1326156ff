"""Tests of btnet_core.degrade: the one degradation function, upsampling, uint8 conversion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from btnet_core.degrade import Degradation, degrade, to_tensor, upsample
from btnet_core.errors import ConfigError


def _faces(n: int = 2, size: int = 112, seed: int = 0) -> torch.Tensor:
    """Random smooth-ish images in [-1, 1] with fine detail (a mix of noise and a gradient)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    ramp = torch.linspace(-1, 1, size).view(1, 1, 1, size)
    return (0.5 * noise + 0.5 * ramp).clamp(-1, 1)


@pytest.mark.parametrize("kernel", ["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("size", [7, 14, 28, 56])
def test_shape_dtype_and_range(kernel: str, size: int) -> None:
    """Every kernel gives (N, C, size, size) of the input dtype, inside [-1, 1]."""
    x = _faces()
    y = degrade(x, size, Degradation(kernel=kernel))
    assert y.shape == (2, 3, size, size) and y.dtype == x.dtype
    assert y.min() >= -1.0 and y.max() <= 1.0


def test_area_kernel_is_the_block_mean() -> None:
    """A hand case: 4x4 -> 2x2 area downsampling averages each 2x2 block."""
    x = torch.tensor(
        [
            [0.0, 0.2, -0.4, -0.4],
            [0.4, 0.2, -0.4, -0.8],
            [1.0, 1.0, 0.1, 0.3],
            [1.0, 0.6, 0.5, 0.7],
        ]
    ).view(1, 1, 4, 4)
    y = degrade(x, 2, Degradation(kernel="area"))
    expected = torch.tensor([[0.2, -0.5], [0.9, 0.4]]).view(1, 1, 2, 2)
    torch.testing.assert_close(y, expected)


def test_area_kernel_block_mean_at_112_to_7() -> None:
    """112 -> 7 area downsampling is the mean of each 16x16 block."""
    x = _faces(1)
    y = degrade(x, 7)
    blocks = x.view(1, 3, 7, 16, 7, 16).mean(dim=(3, 5))
    torch.testing.assert_close(y, blocks)


def test_antialias_changes_bilinear_results() -> None:
    """Without antialias, 16x bilinear reads few pixels; with it, it averages: they differ."""
    x = _faces(1)
    smooth = degrade(x, 7, Degradation(kernel="bilinear", antialias=True))
    aliased = degrade(x, 7, Degradation(kernel="bilinear", antialias=False))
    assert (smooth - aliased).abs().max() > 0.05
    # The antialiased result is close to the block mean, the aliased one is not.
    area = degrade(x, 7)
    assert (smooth - area).abs().mean() < (aliased - area).abs().mean()


def test_full_size_returns_the_input_unchanged() -> None:
    """size == H without noise or JPEG returns the input itself (blur and kernel skipped)."""
    x = _faces(1)
    assert degrade(x, 112, Degradation(kernel="bicubic", blur_sigma=2.0)) is x


def test_full_size_still_applies_noise() -> None:
    """size == H with noise set adds the noise."""
    x = _faces(1)
    y = degrade(x, 112, Degradation(noise_std=0.1), generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)


def test_blur_smooths_before_downsampling() -> None:
    """Blur removes fine detail: downsampled white noise varies less with blur than without."""
    noise = torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = degrade(noise, 56, Degradation(kernel="bilinear"))
    blurred = degrade(noise, 56, Degradation(kernel="bilinear", blur_sigma=1.5))
    assert blurred.std() < 0.6 * plain.std()


def test_blur_preserves_flat_images() -> None:
    """The blur kernel sums to one and borders are reflected: a flat image stays flat."""
    flat = torch.full((1, 3, 112, 112), 0.3)
    y = degrade(flat, 28, Degradation(blur_sigma=3.0))
    torch.testing.assert_close(y, torch.full((1, 3, 28, 28), 0.3))


def test_noise_is_reproducible_by_generator() -> None:
    """The same generator seed gives the same noise; another seed gives other noise."""
    x = _faces(1)
    spec = Degradation(noise_std=0.05)
    a = degrade(x, 14, spec, generator=torch.Generator().manual_seed(7))
    b = degrade(x, 14, spec, generator=torch.Generator().manual_seed(7))
    c = degrade(x, 14, spec, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_noise_has_the_requested_std() -> None:
    """Noise is additive with std noise_std (away from the clipping limits)."""
    x = torch.zeros(4, 3, 112, 112)
    y = degrade(x, 56, Degradation(noise_std=0.05), generator=torch.Generator().manual_seed(0))
    assert y.std().item() == pytest.approx(0.05, rel=0.05)
    assert abs(y.mean().item()) < 0.005


def test_noise_output_stays_in_range() -> None:
    """Noise on saturated pixels is clipped back to [-1, 1]."""
    x = torch.ones(1, 3, 28, 28)
    y = degrade(x, 14, Degradation(noise_std=0.5), generator=torch.Generator().manual_seed(0))
    assert y.max() <= 1.0 and y.min() >= -1.0


def test_jpeg_changes_the_image_but_keeps_its_mean() -> None:
    """A JPEG round trip at quality 20 alters pixels but the mean stays within a grey level."""
    x = _faces(2)
    plain = degrade(x, 28)
    jpeg = degrade(x, 28, Degradation(jpeg_quality=20))
    assert (jpeg - plain).abs().max() > 0.05
    assert (jpeg.mean(dim=(1, 2, 3)) - plain.mean(dim=(1, 2, 3))).abs().max() < 0.03
    assert jpeg.min() >= -1.0 and jpeg.max() <= 1.0


def test_jpeg_quality_orders_the_error() -> None:
    """Higher JPEG quality is closer to the original."""
    x = _faces(2)
    plain = degrade(x, 56)
    low = (degrade(x, 56, Degradation(jpeg_quality=10)) - plain).abs().mean()
    high = (degrade(x, 56, Degradation(jpeg_quality=95)) - plain).abs().mean()
    assert high < low


def test_jpeg_handles_single_channel() -> None:
    """Greyscale (C=1) goes through an 8-bit greyscale JPEG."""
    x = _faces(1)[:, :1]
    y = degrade(x, 14, Degradation(jpeg_quality=50))
    assert y.shape == (1, 1, 14, 14)


def test_half_precision_input_keeps_its_dtype() -> None:
    """bfloat16 images are resampled in float32 and returned as bfloat16."""
    x = _faces(1).to(torch.bfloat16)
    y = degrade(x, 14, Degradation(kernel="bicubic"))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(
        y.float(), degrade(x.float(), 14, Degradation(kernel="bicubic")), atol=1e-2, rtol=0
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kernel", "lanczos", "allowed: area, bilinear, bicubic"),
        ("antialias", "yes", "true or false"),
        ("blur_sigma", -1.0, "blur_sigma"),
        ("noise_std", float("nan"), "noise_std"),
        ("jpeg_quality", 0, "1..100"),
        ("jpeg_quality", 75.0, "1..100"),
    ],
)
def test_invalid_spec_is_a_config_error(field: str, value: object, message: str) -> None:
    """A bad Degradation field is one ConfigError line naming the field and what is allowed."""
    with pytest.raises(ConfigError, match=message) as info:
        Degradation(**{field: value})
    assert f"degradation.{field}" in str(info.value) and "\n" not in str(info.value)


def test_spec_is_frozen() -> None:
    """A Degradation cannot be changed after it is made (it is part of a run's identity)."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        Degradation().kernel = "bicubic"  # type: ignore[misc]


def test_size_larger_than_input_is_a_config_error() -> None:
    """Asking for more pixels than the input has is refused with the allowed range."""
    with pytest.raises(ConfigError, match=r"1\.\.28"):
        degrade(_faces(1, size=28), 56)


def test_non_square_or_integer_input_is_refused() -> None:
    """Non-square images and integer tensors are caller bugs."""
    with pytest.raises(ValueError, match="N, C, H, H"):
        degrade(torch.zeros(1, 3, 112, 96), 14)
    with pytest.raises(ValueError, match="float"):
        degrade(torch.zeros(1, 3, 112, 112, dtype=torch.uint8), 14)


@pytest.mark.parametrize("kernel", ["nearest", "bilinear", "bicubic"])
def test_upsample_shape_and_range(kernel: str) -> None:
    """upsample gives (N, C, size, size) in [-1, 1] for every kernel."""
    small = degrade(_faces(2), 14)
    big = upsample(small, 112, kernel)
    assert big.shape == (2, 3, 112, 112)
    assert big.min() >= -1.0 and big.max() <= 1.0


def test_upsample_bicubic_is_clamped() -> None:
    """Bicubic overshoots at a hard edge; the result is clipped to [-1, 1]."""
    edge = -torch.ones(1, 1, 8, 8)
    edge[..., 4:] = 1.0
    raw = torch.nn.functional.interpolate(edge, size=(64, 64), mode="bicubic")
    assert raw.max() > 1.0
    assert upsample(edge, 64, "bicubic").max() == 1.0


def test_upsample_nearest_repeats_pixels() -> None:
    """Nearest upsampling by 2 repeats each pixel in a 2x2 block."""
    x = torch.tensor([[0.1, -0.3], [0.7, 0.2]]).view(1, 1, 2, 2)
    y = upsample(x, 4, "nearest")
    torch.testing.assert_close(y, x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))


def test_upsample_bilinear_uses_half_pixel_centres() -> None:
    """align_corners=False: 2 -> 4 bilinear gives 0.75/0.25 mixes, edges replicated."""
    x = torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 2).repeat(1, 1, 2, 1)
    y = upsample(x, 4, "bilinear")
    torch.testing.assert_close(y[0, 0, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_upsample_same_size_is_identity_and_errors() -> None:
    """Same size returns the input; a smaller size or unknown kernel is a ConfigError."""
    x = _faces(1, size=28)
    assert upsample(x, 28) is x
    with pytest.raises(ConfigError, match=">= the input size 28"):
        upsample(x, 14)
    with pytest.raises(ConfigError, match="allowed: nearest, bilinear, bicubic"):
        upsample(x, 112, "area")


def test_to_tensor_maps_uint8_to_minus_one_one() -> None:
    """0 -> -1, 255 -> 1, and (x/255 - 0.5)/0.5 in between; NHWC -> NCHW float32."""
    arr = np.array([0, 51, 128, 255], dtype=np.uint8).reshape(1, 2, 2, 1).repeat(3, axis=3)
    t = to_tensor(arr)
    assert t.shape == (1, 3, 2, 2) and t.dtype == torch.float32
    expected = (torch.tensor([[0.0, 51.0], [128.0, 255.0]]) / 255 - 0.5) / 0.5
    torch.testing.assert_close(t[0, 0], expected)


def test_to_tensor_keeps_channel_order() -> None:
    """RGB channels land in channel 0, 1, 2 of the tensor."""
    arr = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    arr[..., 1] = 255
    torch.testing.assert_close(to_tensor(arr)[0, :, 0, 0], torch.tensor([-1.0, 1.0, -1.0]))


def test_to_tensor_repeats_greyscale() -> None:
    """C=1 and channel-less (N, H, W) greyscale become three equal channels."""
    grey = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    for arr in (grey, grey[..., 0]):
        t = to_tensor(arr)
        assert t.shape == (1, 3, 4, 4)
        assert torch.equal(t[:, 0], t[:, 1]) and torch.equal(t[:, 1], t[:, 2])


def test_to_tensor_rejects_wrong_dtype_and_channels() -> None:
    """Float arrays and 4-channel arrays are refused."""
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(np.zeros((1, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="C 1 or 3"):
        to_tensor(np.zeros((1, 4, 4, 4), dtype=np.uint8))
