"""Image conversion shared by the torchvision and Hugging Face sources (docs/partition.md).

Images become uint8 arrays of shape (H, W, C): grayscale stays one channel, everything else
is RGB. A set that mixes grayscale and colour images is promoted to RGB as a whole.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from fedlt.errors import DataError

GRAY_MODES = ("1", "L", "I", "I;16", "F")


def to_pixels(image: Any, image_size: int | None = None) -> np.ndarray:
    """One PIL image (or array) as uint8 (H, W, C), resized to a square if ``image_size``."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    image = image.convert("L" if image.mode in GRAY_MODES else "RGB")
    if image_size is not None and image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def open_image(item: bytes | str) -> Any:
    """A PIL image from encoded bytes or a file path."""
    from PIL import Image

    return Image.open(io.BytesIO(item) if isinstance(item, (bytes, bytearray)) else item)


def stack_images(images: Sequence[np.ndarray], where: Callable[[int], str]) -> np.ndarray:
    """Stack HWC images into one NHWC array; one-channel images join RGB ones as gray RGB.

    A size mismatch raises DataError naming ``where(i)`` and ``data.options.image_size``.
    """
    if not images:
        return np.zeros((0, 1, 1, 3), dtype=np.uint8)
    channels = max(image.shape[2] for image in images)
    first = images[0]
    out = np.empty((len(images), first.shape[0], first.shape[1], channels), dtype=np.uint8)
    for i, image in enumerate(images):
        if image.shape[:2] != first.shape[:2]:
            raise DataError(
                f"{where(i)}: image is {image.shape[1]}x{image.shape[0]}, but {where(0)} is "
                f"{first.shape[1]}x{first.shape[0]}; set data.options.image_size to resize "
                "all images to one size"
            )
        out[i] = image if image.shape[2] == channels else np.repeat(image, channels, axis=2)
    return out


def decode_encoded(
    items: Sequence[bytes | str], image_size: int | None, workers: int, where: Callable[[int], str]
) -> np.ndarray:
    """Decode encoded images (bytes or paths) with a thread pool into one NHWC array."""

    def decode(i: int) -> np.ndarray:
        try:
            with open_image(items[i]) as image:
                return to_pixels(image, image_size)
        except DataError:
            raise
        except Exception as exc:
            raise DataError(
                f"{where(i)}: cannot decode image ({type(exc).__name__}: {exc})"
            ) from exc

    if workers <= 1 or len(items) < 64:
        decoded = [decode(i) for i in range(len(items))]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            decoded = list(pool.map(decode, range(len(items)), chunksize=256))
    return stack_images(decoded, where)


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Resize uint8 NHWC images to ``size`` × ``size`` (bilinear, PIL)."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, images.shape[3]), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = to_pixels(image[..., 0] if image.shape[-1] == 1 else image, size)
    return out
