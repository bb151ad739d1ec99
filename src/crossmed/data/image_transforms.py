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
