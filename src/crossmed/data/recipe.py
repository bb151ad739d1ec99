"""The preprocessing recipe: how one raw image becomes the network's input, as data that travels with every exported model.

The preprocess stage writes it into the data card; training copies it into the checkpoint; export puts it in
model.json, the MLflow model and the MONAI bundle. `prepare` applies it to a file or an array, using the same
functions the preprocess stage used, so a demonstration sees the inputs the model was validated on.
"""

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Resize

from crossmed.data.image_files import read_image_file
from crossmed.data.image_transforms import to_common_grid
from crossmed.errors import InputError
from crossmed.limits import PREDICT_LIMITS, InputLimits, check_finite

KINDS = ("grid", "medmnist")


@dataclass(frozen=True)
class Recipe:
    """Preprocessing of one image: 'grid' (files resampled and z-scored) or 'medmnist' (uint8 scaled to [-1, 1])."""

    kind: str
    channels: int
    spatial_dims: int
    image_size: int
    spacing_mm: float | None = None  # grid: resample to this spacing when the file has one
    source_size: int | None = None  # medmnist: the edge of the published images

    def as_dict(self) -> dict:
        """Return the recipe as JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None, where: str = "model") -> "Recipe":
        """Return the recipe stored in a data card, checkpoint or model.json; raise InputError when absent or unknown."""
        if not data:
            raise InputError(where, "carries no preprocessing recipe (made before crossmed recorded one): rerun the "
                                    "preprocess, train and export stages")
        if data.get("kind") not in KINDS:
            raise InputError(where, f"unknown preprocessing recipe kind {data.get('kind')!r} (known: {', '.join(KINDS)})")
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    @property
    def shape(self) -> tuple[int, ...]:
        """Return the network's input shape (C, *spatial)."""
        return (self.channels, *(self.image_size,) * self.spatial_dims)


def _channel_first(array: np.ndarray, recipe: Recipe, where: str) -> np.ndarray:
    """Return an array of raw pixels as (C, *spatial), adding or moving the channel axis where that is unambiguous."""
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == recipe.spatial_dims:
        array = array[None]
    elif array.ndim == recipe.spatial_dims + 1 and array.shape[0] != recipe.channels and array.shape[-1] == recipe.channels:
        array = np.moveaxis(array, -1, 0)  # channels last, as PNG/JPEG decoders give them
    if array.ndim != recipe.spatial_dims + 1 or array.shape[0] != recipe.channels:
        raise InputError(where, f"array of shape {array.shape} is not a {recipe.spatial_dims}D image with {recipe.channels} "
                                "channel(s)")
    return array


def _medmnist(pixels: np.ndarray, recipe: Recipe) -> np.ndarray:
    """Return uint8-range pixels scaled to [-1, 1] and resized to the network's edge, as the MedMNIST source does."""
    scaled = pixels.astype(np.float32) / 127.5 - 1.0
    if scaled.shape[1:] == (recipe.image_size,) * recipe.spatial_dims:
        return scaled
    mode = "area" if max(scaled.shape[1:]) > recipe.image_size else ("trilinear" if recipe.spatial_dims == 3 else "bilinear")
    return np.asarray(Resize(spatial_size=(recipe.image_size,) * recipe.spatial_dims, mode=mode)(torch.as_tensor(scaled)),
                      dtype=np.float32)


def prepare(recipe: Recipe, source: str | Path | np.ndarray, where: str | None = None,
            limits: InputLimits = PREDICT_LIMITS) -> np.ndarray:
    """Return the network input (C, *spatial) float32 for an image file (DICOM, NIfTI, PNG, JPEG) or an array of raw pixels.

    Files larger than `limits` and pixels that are NaN or infinite are refused (InputError), never predicted.
    """
    if isinstance(source, (str, Path)):
        image = read_image_file(source, recipe.channels, recipe.spatial_dims, limits)
        pixels, spacing, where = image.pixels, image.spacing_mm, str(source)
    else:
        pixels, spacing = _channel_first(source, recipe, where or "array"), None
        check_finite(where or "array", pixels)
    if recipe.kind == "medmnist":
        return _medmnist(pixels, recipe)
    return to_common_grid(pixels, spacing, recipe.spacing_mm, recipe.image_size)


def example_pixels(recipe: Recipe, prepared: np.ndarray) -> np.ndarray:
    """Return raw pixels that `prepare` maps back onto a prepared image (an input example for the exported models)."""
    if recipe.kind == "medmnist":
        return np.clip(np.round((np.asarray(prepared) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.asarray(prepared, dtype=np.float32)  # z-scored already: the grid steps leave it as it is
