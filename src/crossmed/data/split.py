"""Patient-level splits stratified by label (and site), held-out sites, and the leakage check that guards them."""

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from crossmed.errors import ConfigError, CrossmedError

SPLITS = ("train", "val", "test", "external_test")
LEAKAGE_POLICIES = ("error", "drop")


class LeakageError(CrossmedError):
    """A patient or an identical image appears in more than one split."""


def _one_fold(rows: pd.DataFrame, fraction: float, strata: pd.Series, groups: pd.Series, seed: int) -> np.ndarray:
    """Return a boolean mask of about `fraction` of `rows`, whole groups only, stratified by `strata`."""
    folds = max(2, int(round(1 / fraction)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # rare strata trigger "least populated class" warnings; groups still hold
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(splitter.split(rows, strata, groups))
    mask = np.zeros(len(rows), dtype=bool)
    mask[held] = True
    return mask


def _check_sites(manifest: pd.DataFrame, key: str, sites: list[str]) -> None:
    unknown = set(sites) - set(manifest["site"])
    if unknown:
        raise ConfigError(key, f"site(s) {sorted(unknown)} not among the data's sites {sorted(set(manifest['site']))}")


def assign_splits(manifest: pd.DataFrame, external_sites: list[str], val_fraction: float, test_fraction: float,
                  seed: int, train_sites: list[str] | None = None, stratify_by_site: bool = False) -> pd.Series:
    """Return the split of each row: external sites whole to external_test, the rest split by patient.

    Patients are kept whole and the split is stratified by label (and by site when asked); internal
    sites outside `train_sites` (when given) go to the internal test set only.
    """
    _check_sites(manifest, "study.external_sites", external_sites)
    _check_sites(manifest, "study.train_sites", list(train_sites or []))
    if set(train_sites or []) & set(external_sites):
        raise ConfigError("study.train_sites", f"site(s) {sorted(set(train_sites) & set(external_sites))} are also external")
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError("data.split", f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum below 1")
    split = pd.Series("external_test", index=manifest.index, dtype=object)
    internal = manifest[~manifest["site"].isin(external_sites)]
    if train_sites:
        split[internal.index[~internal["site"].isin(train_sites)]] = "test"
        internal = internal[internal["site"].isin(train_sites)]
    if internal["patient_id"].nunique() < 3:
        raise ConfigError("study.external_sites", "fewer than 3 patients left for train/val/test")
    groups = internal["site"] + "/" + internal["patient_id"]
    strata = internal["label"].astype(str) + ("@" + internal["site"] if stratify_by_site else "")
    test = _one_fold(internal, test_fraction, strata, groups, seed)
    rest = internal[~test]
    val = _one_fold(rest, val_fraction / (1 - test_fraction), strata[~test], groups[~test], seed + 1)
    split[internal.index[test]] = "test"
    split[rest.index[val]] = "val"
    split[rest.index[~val]] = "train"
    return split


def check_leakage(manifest: pd.DataFrame, policy: str = "error") -> tuple[np.ndarray, dict]:
    """Return (rows to keep, report); raise LeakageError naming the patients or images found in two splits.

    A patient in two splits always stops the run. Identical images (same content_hash) in two splits stop
    it too, unless `policy` is 'drop': then only the copy in the latest split (train < val < test <
    external_test) is kept, so a published test set stays whole.
    """
    if policy not in LEAKAGE_POLICIES:
        raise ConfigError("data.leakage", f"unknown policy '{policy}' (known: {', '.join(LEAKAGE_POLICIES)})")
    keys = manifest["site"] + "/" + manifest["patient_id"]
    per_patient = manifest.groupby(keys)["split"].agg(lambda s: sorted(set(s)))
    crossing = per_patient[per_patient.map(len) > 1]
    if len(crossing):
        named = "; ".join(f"{p} in {', '.join(s)}" for p, s in crossing.head(5).items())
        raise LeakageError(f"{len(crossing)} patient(s) in more than one split: {named}")
    rank = manifest["split"].map({s: i for i, s in enumerate(SPLITS)})
    by_hash = manifest.assign(rank=rank).groupby("content_hash")
    spans = by_hash["split"].transform("nunique") > 1
    keep = np.ones(len(manifest), dtype=bool)
    report = {"policy": policy, "patients_in_two_splits": 0, "identical_images_across_splits": 0, "dropped": []}
    if spans.any():
        leaked = manifest[spans]
        groups = [f"{', '.join(f'{r.image_id} ({r.split})' for r in rows.itertuples())}"
                  for _, rows in leaked.groupby("content_hash")]
        report["identical_images_across_splits"] = len(groups)
        if policy == "error":
            raise LeakageError(f"{len(groups)} identical image(s) in more than one split: {'; '.join(groups[:5])}. "
                               "Set data.leakage=drop to keep only the copy in the latest split")
        latest = manifest.assign(rank=rank)[spans].groupby("content_hash")["rank"].transform("max")
        drop = leaked.index[(rank[spans] < latest).to_numpy()]
        keep[manifest.index.get_indexer(drop)] = False
        report["dropped"] = [f"{manifest.at[i, 'image_id']} ({manifest.at[i, 'split']})" for i in drop]
    return keep, report
