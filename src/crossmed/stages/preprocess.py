"""Stage `preprocess`: any source to one memory-mapped dataset with leak-free splits and a data card.

Reads paths.deidentified (and data.path for sources read in place); writes paths.processed: images.npy, labels.npy,
manifest.csv, data_card.json and data_card.md (the format crossmed.data.processed reads).
"""

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crossmed.data.card import data_card, data_card_markdown
from crossmed.data.processed import (DATA_CARD_FILE, DATA_CARD_MARKDOWN, IMAGES_FILE, LABELS_FILE, MANIFEST_COLUMNS,
                                     MANIFEST_FILE, create_image_array)
from crossmed.data.findings import SOURCE_FINDING_COLUMNS, findings_on_grid
from crossmed.data.split import SPLITS, assign_splits, check_leakage
from crossmed.errors import ConfigError, report_problems
from crossmed.sources import get_source
from crossmed.sources.base import SourceTable
from crossmed.files import atomic_directory, write_json_atomic, write_text_atomic

log = logging.getLogger("crossmed.preprocess")
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


def run(cfg) -> dict:
    """Write images.npy, labels.npy, manifest.csv and the data card (JSON, Markdown) to paths.processed; return the card."""
    deid_dir, out_dir = Path(cfg.paths.deidentified), Path(cfg.paths.processed)
    started = time.perf_counter()
    source = get_source(cfg.data.source)
    table, shape, fill = source.read(cfg, deid_dir)
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
        findings = findings_on_grid(manifest, cfg.data)  # None unless the source records where findings are
        columns = MANIFEST_COLUMNS + table.subgroups
        if findings is not None:
            manifest = pd.concat([manifest.drop(columns=list(SOURCE_FINDING_COLUMNS)), findings], axis=1)
            columns = columns + list(findings.columns)
        manifest[columns].to_csv(tmp / MANIFEST_FILE, index=False)
        card = data_card(manifest, table.task, table.description, table.preprocessing, list(shape), table.subgroups,
                         list(cfg.study.external_sites), leakage) | {"recipe": table.recipe}
        write_json_atomic(tmp / DATA_CARD_FILE, card)
        write_text_atomic(tmp / DATA_CARD_MARKDOWN, data_card_markdown(card, source.format))
    counts = {s: int((manifest["split"] == s).sum()) for s in SPLITS if (manifest["split"] == s).any()}
    log.info("wrote %d images %s, labels, manifest and data card to %s in %.1f s", len(manifest), counts, out_dir,
             time.perf_counter() - started)
    return card

