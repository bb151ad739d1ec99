"""Bounds shared by the picture and NIfTI rewriters: the declared pixel count, and the step for inflating streams."""

from math import prod
from pathlib import Path

from crossmed.errors import InputError

INFLATE_STEP = 1 << 20


def check_pixel_count(source: Path, size: tuple[int, ...], max_pixels: int) -> None:
    """Refuse an image whose header declares more pixels than `max_pixels`, before any decoding."""
    count = prod(int(n) for n in size)
    if count > max_pixels:
        raise InputError(source, f"header declares {count} pixels {tuple(size)}, over the limit of {max_pixels}")
