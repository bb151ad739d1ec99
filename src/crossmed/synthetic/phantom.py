"""Projection-like images of textured tissue with vessels and, in some, a round opacity."""

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

RENDER_SPACING_MM = 0.5


@dataclass(frozen=True)
class Opacity:
    """A round opacity: centre and radius in mm, amplitude in units of the tissue texture's SD."""

    centre_mm: tuple[float, float]
    radius_mm: float
    amplitude: float


@dataclass(frozen=True)
class Acquisition:
    """How one site's device turns tissue into pixels."""

    rows: int
    pixel_spacing_mm: float
    contrast: float
    noise_sd: float
    blur_px: float


def patient_anatomy(seed: int, fov_mm: float) -> np.ndarray:
    """Return a patient's tissue texture (zero mean, unit SD) on the render grid, larger than the FOV."""
    rng = np.random.default_rng(seed)
    size = int(round(fov_mm / RENDER_SPACING_MM)) + 32
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 8) * 3.0
    texture += ndimage.gaussian_filter(rng.normal(size=(size, size)), 3)
    texture = (texture - texture.mean()) / texture.std()
    vessels = np.zeros((size, size))
    for _ in range(int(rng.integers(4, 8))):
        point = rng.uniform(0, size, 2)
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(size * 2):
            heading += rng.normal(0, 0.08)
            point += (np.cos(heading), np.sin(heading))
            i, j = int(point[0]), int(point[1])
            if not (0 <= i < size and 0 <= j < size):
                break
            vessels[i, j] = 1.0
    vessels = ndimage.gaussian_filter(vessels, 1.2)
    return texture + 1.6 * vessels / max(vessels.max(), 1e-6)


def render(anatomy: np.ndarray, opacity: Opacity | None, fov_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Return tissue signal on the render grid: a shifted view of the anatomy plus the opacity."""
    size = int(round(fov_mm / RENDER_SPACING_MM))
    off = rng.integers(0, anatomy.shape[0] - size, 2)
    view = anatomy[off[0]:off[0] + size, off[1]:off[1] + size].copy()
    if opacity is not None:
        yy, xx = np.mgrid[0:size, 0:size] * RENDER_SPACING_MM
        r = np.hypot(yy - opacity.centre_mm[0], xx - opacity.centre_mm[1]) / opacity.radius_mm
        view += opacity.amplitude * np.exp(-(r**4))
    return view


def acquire(signal: np.ndarray, acquisition: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Return the site's image in tissue units: resampled to its grid, blurred and noisy."""
    zoom = acquisition.rows / signal.shape[0]
    image = ndimage.zoom(ndimage.gaussian_filter(signal, 0.5 / zoom), zoom, order=1)
    image = image[: acquisition.rows, : acquisition.rows]
    if acquisition.blur_px > 0:
        image = ndimage.gaussian_filter(image, acquisition.blur_px)
    return acquisition.contrast * image + rng.normal(0, acquisition.noise_sd, image.shape)


def random_opacity(rng: np.random.Generator, fov_mm: float, radius_mm: tuple[float, float], amplitude: tuple[float, float]) -> Opacity:
    """Return an opacity placed well inside the field of view."""
    margin = fov_mm * 0.15
    centre = tuple(float(c) for c in rng.uniform(margin, fov_mm - margin, 2))
    return Opacity(centre, float(rng.uniform(*radius_mm)), float(rng.uniform(*amplitude)))
