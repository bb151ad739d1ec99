"""MONAI transforms that bring every source's image onto one grid and intensity scale, in 2D or 3D."""

import numpy as np
from monai.transforms import Compose, NormalizeIntensity, Resize, ResizeWithPadOrCrop


def grid_shape(shape: tuple[int, ...], spacing_mm: tuple[float, ...], target_spacing_mm: float) -> tuple[int, ...]:
    """Return the spatial shape of an image of `shape` and `spacing_mm` resampled to `target_spacing_mm`."""
    return tuple(max(1, int(round(n * s / target_spacing_mm))) for n, s in zip(shape, spacing_mm))


def to_common_grid(pixels: np.ndarray, spacing_mm: tuple[float, ...] | None, target_spacing_mm: float | None,
                   image_size: int) -> np.ndarray:
    """Return a channel-first float32 image of edge `image_size`, z-scored per channel.

    With spacings the image is resampled to `target_spacing_mm` (area averaging) and centre-cropped or
    zero-padded; without (PNG, JPEG) its longest edge is scaled to `image_size` and the rest padded.
    """
    spatial = pixels.shape[1:]
    if spacing_mm is not None and target_spacing_mm:
        resize = Resize(spatial_size=grid_shape(spatial, spacing_mm, target_spacing_mm), mode="area")
    else:
        resize = Resize(spatial_size=image_size, size_mode="longest", mode="area")
    transform = Compose([
        resize,  # area averaging avoids aliasing when shrinking
        ResizeWithPadOrCrop(spatial_size=(image_size,) * len(spatial)),
        NormalizeIntensity(channel_wise=True),
    ])
    return np.asarray(transform(pixels.astype(np.float32)), dtype=np.float32)


def resized_shape(shape: tuple[int, ...], spacing_mm: tuple[float, ...] | None, target_spacing_mm: float | None,
                  image_size: int) -> tuple[int, ...]:
    """Return the spatial shape to_common_grid resizes an image of `shape` to, before cropping or padding."""
    if spacing_mm is not None and target_spacing_mm:
        return grid_shape(shape, spacing_mm, target_spacing_mm)
    scale = image_size / max(shape)
    return tuple(int(round(n * scale)) for n in shape)


def point_on_grid(point: tuple[float, ...], radius: float, shape: tuple[int, ...], spacing_mm: tuple[float, ...] | None,
                  target_spacing_mm: float | None, image_size: int) -> tuple[tuple[float, ...], float]:
    """Return where a point (pixel coordinates of the source image) and a radius (pixels) land on the common grid.

    Follows to_common_grid: area resizing maps pixel centre c to (c + 0.5) * new/old - 0.5; MONAI's centre crop
    starts at new // 2 - size // 2 and its symmetric pad adds (size - new) // 2 before.
    """
    resized = resized_shape(shape, spacing_mm, target_spacing_mm, image_size)
    mapped = []
    for c, old, new in zip(point, shape, resized):
        c = (c + 0.5) * new / old - 0.5
        mapped.append(c - (new // 2 - image_size // 2) if new >= image_size else c + (image_size - new) // 2)
    scale = sum(new / old for old, new in zip(shape, resized)) / len(shape)
    return tuple(mapped), radius * scale
