"""Preprocess throughput (images/second) for the BreastMNIST file and for a folder of 2,000 PNGs; print JSON.

The PNG folder is generated here (256 x 256 grayscale, two sites, a CSV manifest) and runs through the
deidentify stage (pseudonymised manifest, images copied under neutral names) and the preprocess stage with
1 and 2 worker processes. Each timing is the median of --repeats runs.
Run from the repository root after set-up: `.venv/bin/python benchmarks/preprocess_throughput.py`.
"""

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from PIL import Image
from timing import median_seconds  # benchmarks/timing.py (scripts run from benchmarks/)

REPO = Path(__file__).resolve().parent.parent


def _config(root: Path, overrides: list[str]):
    from crossmed.params_file import compose_params
    from crossmed.study_paths import folder_overrides

    return OmegaConf.create(compose_params(REPO / "conf", overrides=[*overrides, *folder_overrides(root, ("deidentified", "processed"))]))


def write_png_folder(folder: Path, count: int, size: int = 256) -> None:
    """Write `count` smooth grayscale PNGs with a manifest and site keys."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    rows = []
    for i in range(count):
        a, b, c = rng.uniform(0.5, 6, 3)
        image = 127 + 60 * np.sin(a * 6.28 * xx + b) * np.cos(c * 6.28 * yy) + rng.normal(0, 8, (size, size))
        name = f"site{i % 2}/patient{i // 4:05d}/image{i:05d}.png"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / name)
        rows.append({"image": name, "patient_id": f"P{i // 4:05d}", "site": f"S{i % 2}", "label": i % 2,
                     "sex": "FM"[i % 2], "age": 40 + i % 40})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    (folder / "keys").mkdir()
    for site in ("S0", "S1"):
        (folder / "keys" / f"{site}.key").write_text(os.urandom(32).hex())


def main() -> None:
    """Run the timings and print one JSON object."""
    from crossmed.stages import preprocess as preprocess_stage
    from crossmed.stages import deidentify as deidentify_stage

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--medmnist", type=Path, default=REPO.parent / "shared" / "data" / "breastmnist.npz")
    parser.add_argument("--pngs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    figures = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    with tempfile.TemporaryDirectory(prefix="crossmed-throughput-") as tmp:
        tmp = Path(tmp)
        if args.medmnist.is_file():
            cfg = _config(tmp / "mm", ["data=medmnist", f"data.path={args.medmnist.resolve()}", "data.leakage=drop"])
            seconds = median_seconds(lambda: preprocess_stage.run(cfg), args.repeats)
            images = len(pd.read_csv(Path(cfg.paths.processed) / "manifest.csv"))
            figures["breastmnist_28"] = {"images": images, "seconds": round(seconds, 3),
                                         "images_per_second": round(images / seconds, 1)}
        folder = tmp / "pngs"
        started = time.perf_counter()
        write_png_folder(folder, args.pngs)
        figures["png_folder"] = {"images": args.pngs, "source_size": "256x256 grayscale",
                                 "generate_seconds": round(time.perf_counter() - started, 1)}
        for workers in (1, 2):
            cfg = _config(tmp / f"w{workers}", ["data=folder", f"data.path={folder}", "data.image_size=64",
                                                "data.spacing_mm=null", f"data.workers={workers}", f"deid.workers={workers}"])
            deid = median_seconds(lambda: deidentify_stage.run(cfg), args.repeats)
            prep = median_seconds(lambda: preprocess_stage.run(cfg), args.repeats)
            figures["png_folder"][f"workers_{workers}"] = {
                "deidentify_seconds": round(deid, 2), "deidentify_images_per_second": round(args.pngs / deid, 1),
                "preprocess_seconds": round(prep, 2), "preprocess_images_per_second": round(args.pngs / prep, 1)}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
