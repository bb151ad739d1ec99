"""The preprocess stage: any source to one memory-mapped dataset with leak-free splits and a data card."""

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.data.card import data_card, data_card_markdown
from crossmed.data.image_files import image_kind
from crossmed.data.image_pipeline import GridSpec, grid_steps, process_files, report_problems
from crossmed.data.processed import (DATA_CARD_FILE, DATA_CARD_MARKDOWN, IMAGES_FILE, LABELS_FILE, MANIFEST_COLUMNS,
                                     MANIFEST_FILE, create_image_array)
from crossmed.data.sources import SourceTable
from crossmed.data.image_transforms import point_on_grid
from crossmed.data.sources.dicom_sites import SOURCE_FINDING_COLUMNS, dicom_sites_table
from crossmed.data.sources.folder import folder_table
from crossmed.data.sources.medmnist_arrays import fill_medmnist, medmnist_preprocessing, medmnist_table
from crossmed.data.split import SPLITS, assign_splits, check_leakage
from crossmed.errors import ConfigError
from crossmed.data.recipe import Recipe
from crossmed.files import atomic_directory, write_json_atomic, write_text_atomic

log = logging.getLogger("crossmed.preprocess")
SOURCES = ("synthetic", "folder", "medmnist")
STAGING_FILE = "images.staging.npy"
COPY_CHUNK = 1024


def _select_sites(table: SourceTable, sites: list[str]) -> SourceTable:
    if not sites:
        return table
    unknown = set(sites) - set(table.rows["site"])
    if unknown:
        raise ConfigError("study.sites", f"site(s) {sorted(unknown)} not in the data (has {sorted(set(table.rows['site']))})")
    keep = table.rows["site"].isin(sites).to_numpy()
    table.rows, table.labels = table.rows[keep].reset_index(drop=True), table.labels[keep]
    return table


def _splits(rows: pd.DataFrame, study, split_cfg, seed: int) -> pd.Series:
    """Return the given splits (external sites to external_test) or new patient-level ones."""
    external = list(study.external_sites)
    given = rows["split"].astype(str)
    if (given != "").all():
        unknown = set(external) - set(rows["site"])
        if unknown:
            raise ConfigError("study.external_sites", f"site(s) {sorted(unknown)} not in the data")
        log.info("using the splits given with the data")
        return given.where(~rows["site"].isin(external), "external_test")
    if (given != "").any():
        raise ConfigError("data.columns.split", f"{int((given == '').sum())} of {len(given)} rows have no split; give all or none")
    return assign_splits(rows, external, float(split_cfg.val_fraction), float(split_cfg.test_fraction), seed,
                         list(study.get("train_sites") or []), bool(split_cfg.get("stratify_by_site", False)))


def _read_source(cfg, deid_dir: Path) -> tuple[SourceTable, tuple[int, ...], Callable]:
    """Return the source table, the processed image shape and a function filling the image array."""
    data = cfg.data
    workers = int(data.get("workers", 1))
    if data.source == "medmnist":
        table, arrays = medmnist_table(str(data.path), str(data.subset), int(data.size))
        size = int(data.image_size or data.size)
        table.preprocessing = medmnist_preprocessing(int(data.size), size, table.task.spatial_dims)
        table.recipe = Recipe("medmnist", table.task.channels, table.task.spatial_dims, size, source_size=int(data.size)).as_dict()
        return table, (table.task.channels, *(size,) * table.task.spatial_dims), lambda out: (fill_medmnist(arrays, out, size), [])
    if data.source == "synthetic":
        table, problems = dicom_sites_table(deid_dir, list(cfg.study.sites), list(cfg.study.classes))
        report_problems(deid_dir, problems)
    elif data.source == "folder":
        table = folder_table(deid_dir, data)
    else:
        raise ConfigError("data.source", f"unknown source '{data.source}' (known: {', '.join(SOURCES)})")
    grid = GridSpec(table.task.channels, table.task.spatial_dims, int(data.image_size),
                    float(data.spacing_mm) if data.get("spacing_mm") else None)
    table.preprocessing = grid_steps(grid, {image_kind(p) for p in table.rows["path"]})
    table.recipe = Recipe("grid", grid.channels, grid.spatial_dims, grid.image_size, grid.spacing_mm).as_dict()
    return table, grid.shape, lambda out: process_files(list(table.rows["path"]), grid, out, workers)


def _final_images(tmp: Path, staging: np.ndarray, keep: np.ndarray) -> None:
    """Move the staging array to images.npy, copying only the kept rows when some were dropped."""
    staging.flush()
    if keep.all():
        del staging
        os.replace(tmp / STAGING_FILE, tmp / IMAGES_FILE)
        return
    kept = np.flatnonzero(keep)
    final = create_image_array(tmp, len(kept), staging.shape[1:])
    for start in range(0, len(kept), COPY_CHUNK):
        final[start:start + COPY_CHUNK] = staging[kept[start:start + COPY_CHUNK]]
    final.flush()
    del staging, final
    (tmp / STAGING_FILE).unlink()


def findings_on_grid(manifest: pd.DataFrame, data) -> pd.DataFrame | None:
    """Return each image's finding (row, column, radius) on the processed grid, from its source-pixel position; None
    when the source records none. Test and benchmark ground truth for saliency (the pointing game); not PHI."""
    if not set(SOURCE_FINDING_COLUMNS) <= set(manifest.columns):
        return None
    out = []
    for _, row in manifest.iterrows():
        values = pd.to_numeric(pd.Series([row[c] for c in SOURCE_FINDING_COLUMNS]), errors="coerce")
        if values.isna().any() or not row.get("source_shape"):
            out.append({c: "" for c in SOURCE_FINDING_COLUMNS})
            continue
        shape = tuple(int(n) for n in str(row["source_shape"]).split("x"))
        spacing = tuple(float(v) for v in str(row["source_spacing_mm"]).split("x")) if row.get("source_spacing_mm") else None
        (r, c), radius = point_on_grid((values[0], values[1]), float(values[2]), shape, spacing,
                                       float(data.spacing_mm) if data.get("spacing_mm") else None, int(data.image_size))
        out.append({"finding_row": round(r, 2), "finding_col": round(c, 2), "finding_radius": round(radius, 2)})
    return pd.DataFrame(out, index=manifest.index)


def preprocess_study(cfg, deid_dir: str | Path, out_dir: str | Path) -> dict:
    """Write images.npy, labels.npy, manifest.csv and the data card (JSON, Markdown) under `out_dir`; return the card."""
    deid_dir, out_dir = Path(deid_dir), Path(out_dir)
    started = time.perf_counter()
    table, shape, fill = _read_source(cfg, deid_dir)
    if cfg.data.source != "synthetic":
        table = _select_sites(table, list(cfg.study.sites or []))
    rows = table.rows.reset_index(drop=True)
    rows["split"] = _splits(rows, cfg.study, cfg.data.split, int(cfg.seed)).to_numpy()
    log.info("preprocess: %d images from %d patients at %d site(s) onto %s", len(rows), rows["patient_id"].nunique(),
             rows["site"].nunique(), shape)
    with atomic_directory(out_dir) as tmp:
        staging = create_image_array(tmp, len(rows), shape, STAGING_FILE)
        facts, problems = fill(staging)
        report_problems(deid_dir, [f"{rows.at[i, 'source_path']}: {reason}" for i, reason in problems])
        manifest = pd.concat([rows, pd.DataFrame(facts)], axis=1)
        keep, leakage = check_leakage(manifest, str(cfg.data.get("leakage", "error")))
        if not keep.all():
            log.warning("dropped %d identical image(s) found in two splits: %s", int((~keep).sum()), leakage["dropped"][:5])
        _final_images(tmp, staging, keep)
        manifest = manifest[keep].reset_index(drop=True)
        manifest.insert(0, "index", np.arange(len(manifest)))
        np.save(tmp / LABELS_FILE, table.labels[keep])
        findings = findings_on_grid(manifest, cfg.data) if cfg.data.source == "synthetic" else None
        columns = MANIFEST_COLUMNS + table.subgroups
        if findings is not None:
            manifest = pd.concat([manifest.drop(columns=list(SOURCE_FINDING_COLUMNS)), findings], axis=1)
            columns = columns + list(findings.columns)
        manifest[columns].to_csv(tmp / MANIFEST_FILE, index=False)
        card = data_card(manifest, table.task, table.description, table.preprocessing, list(shape), table.subgroups,
                         list(cfg.study.external_sites), leakage) | {"recipe": table.recipe}
        write_json_atomic(tmp / DATA_CARD_FILE, card)
        write_text_atomic(tmp / DATA_CARD_MARKDOWN, data_card_markdown(card))
    counts = {s: int((manifest["split"] == s).sum()) for s in SPLITS if (manifest["split"] == s).any()}
    log.info("wrote %d images %s, labels, manifest and data card to %s in %.1f s", len(manifest), counts, out_dir,
             time.perf_counter() - started)
    return card

