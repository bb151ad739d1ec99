"""MONAI transforms that bring every site's image onto one grid and intensity scale."""

import numpy as np
from monai.transforms import Compose, NormalizeIntensity, Resize, ResizeWithPadOrCrop


def to_common_grid(pixels: np.ndarray, spacing_mm: tuple[float, float], target_spacing_mm: float, image_size: int) -> np.ndarray:
    """Return a (1, image_size, image_size) float32 image at `target_spacing_mm`, z-score normalised."""
    shape = tuple(max(1, int(round(n * s / target_spacing_mm))) for n, s in zip(pixels.shape, spacing_mm))
    transform = Compose([
        Resize(spatial_size=shape, mode="area"),  # area averaging avoids aliasing when shrinking
        ResizeWithPadOrCrop(spatial_size=(image_size, image_size)),
        NormalizeIntensity(),
    ])
    out = transform(pixels[None].astype(np.float32))
    return np.asarray(out, dtype=np.float32)
