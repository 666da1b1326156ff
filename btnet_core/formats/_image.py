"""Image decoding and encoding shared by the format readers and writers.

Every reader in :mod:`btnet_core.formats` hands back images the same way: a ``uint8`` array of
shape ``(H, W, 3)`` in RGB order, whatever the file held (JPEG or PNG, greyscale, palette or
RGBA). A payload that PIL cannot decode becomes a :class:`~btnet_core.errors.FormatError` naming
where it came from.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from btnet_core.errors import DataError, FormatError

__all__ = ["decode_image", "encode_image"]

# What PIL raises for bytes that are not an image, a truncated image or an absurdly large one.
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


def decode_image(data: bytes | bytearray | memoryview, source: str) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ...) to an RGB ``uint8`` array.

    Args:
        data: The encoded bytes.
        source: Where the bytes came from (file and record), used in the error message.

    Returns:
        An array of shape ``(H, W, 3)``, dtype ``uint8``, RGB order; greyscale, palette and RGBA
        images are converted to RGB.

    Raises:
        FormatError: The bytes are not a decodable image.
    """
    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except _DECODE_ERRORS as exc:
        raise FormatError(f"{source}: cannot decode the image ({exc})") from None


def encode_image(image: np.ndarray, image_format: str = "jpeg", quality: int = 95) -> bytes:
    """Encode an RGB or greyscale ``uint8`` array as JPEG or PNG.

    Args:
        image: An array of shape ``(H, W)`` or ``(H, W, 3)``, dtype ``uint8``, RGB order.
        image_format: ``"jpeg"`` (lossy, what InsightFace's files hold) or ``"png"`` (lossless).
        quality: JPEG quality, 1..100; ignored for PNG.

    Returns:
        The encoded bytes.

    Raises:
        DataError: The array is not a ``uint8`` greyscale or RGB image, or the format is unknown.
    """
    array = np.asarray(image)
    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)
    ):
        raise DataError(
            f"cannot encode an array of shape {array.shape} and dtype {array.dtype}: "
            "expected uint8 (H, W) or (H, W, 3)"
        )
    fmt = image_format.lower()
    buffer = io.BytesIO()
    if fmt in ("jpeg", "jpg"):
        Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality))
    elif fmt == "png":
        Image.fromarray(array).save(buffer, format="PNG")
    else:
        raise DataError(f"image_format {image_format!r} is not one of 'jpeg', 'png'")
    return buffer.getvalue()
