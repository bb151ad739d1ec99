"""Read, resample and normalise many image files in parallel into a memory-mapped array, collecting every problem."""

import hashlib
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from monai.data import set_track_meta

from crossmed.data.image_files import read_image_file
from crossmed.data.image_transforms import to_common_grid
from crossmed.errors import InputError

log = logging.getLogger("crossmed.preprocess")
PROGRESS_EVERY_S = 10.0


@dataclass(frozen=True)
class GridSpec:
    """The common grid every image is brought onto."""

    channels: int
    spatial_dims: int
    image_size: int
    spacing_mm: float | None

    @property
    def shape(self) -> tuple[int, ...]:
        """Return the processed image shape (C, *spatial)."""
        return (self.channels, *(self.image_size,) * self.spatial_dims)


def source_facts(pixels: np.ndarray, spacing_mm: tuple[float, ...] | None) -> dict:
    """Return the manifest facts of a source image: shape, spacing, intensity and content hash."""
    return {"source_shape": "x".join(str(n) for n in pixels.shape[1:]),
            "source_spacing_mm": "x".join(f"{s:g}" for s in spacing_mm) if spacing_mm else "",
            "source_mean": round(float(pixels.mean()), 4), "source_std": round(float(pixels.std()), 4),
            "content_hash": hashlib.sha1(np.ascontiguousarray(pixels).tobytes()).hexdigest()}


def _init_worker() -> None:
    """One torch thread per worker process: the processes, not threads, share the cores."""
    torch.set_num_threads(1)


def process_image(job: tuple[str, GridSpec]) -> tuple[np.ndarray | None, dict | None, str | None]:
    """Return (processed image, source facts, None), or (None, None, reason) when the file cannot be used."""
    set_track_meta(False)  # plain tensors: MONAI's metadata tracking costs more than the resize itself here
    path, grid = job
    try:
        image = read_image_file(path, grid.channels, grid.spatial_dims)
    except InputError as err:
        return None, None, err.reason
    if image.pixels.shape[0] != grid.channels:
        return None, None, f"has {image.pixels.shape[0]} channel(s), the study expects {grid.channels}"
    return to_common_grid(image.pixels, image.spacing_mm, grid.spacing_mm, grid.image_size), \
        source_facts(image.pixels, image.spacing_mm), None


def process_files(paths: list[str], grid: GridSpec, out: np.ndarray, workers: int) -> tuple[list[dict], list[tuple[int, str]]]:
    """Write each file's processed image into out[i]; return the facts per file and (index, reason) per failure."""
    facts, problems = [{} for _ in paths], []
    started = last = time.perf_counter()
    jobs = [(p, grid) for p in paths]
    pool = ProcessPoolExecutor(workers, initializer=_init_worker) if workers > 1 and len(paths) > 1 else None
    try:
        results = pool.map(process_image, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers)))) if pool \
            else map(process_image, jobs)
        for i, (image, fact, reason) in enumerate(results):
            if reason is not None:
                problems.append((i, reason))
            else:
                out[i] = image
                facts[i] = fact
            now = time.perf_counter()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                log.info("preprocess: %d/%d images (%.0f images/s)", i + 1, len(paths), (i + 1) / (now - started))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    log.info("preprocess: read %d image files with %d worker(s) in %.1f s, %d problem(s)", len(paths), max(1, workers),
             time.perf_counter() - started, len(problems))
    return facts, problems


def grid_steps(grid: GridSpec, kinds: set[str]) -> list[str]:
    """Return the preprocessing steps of file images brought onto `grid`, for the data card and exported model."""
    edge = " x ".join([str(grid.image_size)] * grid.spatial_dims)
    steps = []
    if "dicom" in kinds:
        steps.append("DICOM: apply the modality LUT (RescaleSlope/RescaleIntercept); invert MONOCHROME1")
    if "nifti" in kinds:
        steps.append("NIfTI: reorient to the closest canonical (RAS+) axes")
    if kinds & {"png", "jpeg"}:
        steps.append(f"PNG/JPEG: convert to {'grayscale' if grid.channels == 1 else 'RGB'}")
    if grid.spacing_mm:
        steps.append(f"resample to {grid.spacing_mm} mm spacing (area averaging); images without spacing: "
                     f"scale the longest edge to {grid.image_size} px")
    else:
        steps.append(f"scale the longest edge to {grid.image_size} px (area averaging)")
    return steps + [f"centre crop or zero-pad to {edge}", "z-score intensities per image and channel (mean 0, SD 1)"]
