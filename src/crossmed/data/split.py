"""Patient-level, site-aware splits and the leakage check that guards them."""

import pandas as pd
from sklearn.model_selection import GroupShuffleSplit

from crossmed.errors import CrossmedError, ConfigError

SPLITS = ("train", "val", "test", "external_test")


class LeakageError(CrossmedError):
    """A patient or an identical image appears in more than one split."""


def assign_splits(manifest: pd.DataFrame, external_sites: list[str], val_fraction: float, test_fraction: float,
                  seed: int) -> pd.Series:
    """Return the split of each row: external sites whole to external_test, others split by patient."""
    unknown = set(external_sites) - set(manifest["site"])
    if unknown:
        raise ConfigError("study.external_sites", f"site(s) {sorted(unknown)} not among the data's sites {sorted(set(manifest['site']))}")
    if not (0 < test_fraction < 1 and 0 < val_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError("data.split", f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0, 1) and sum below 1")
    split = pd.Series("external_test", index=manifest.index, dtype=object)
    internal = manifest[~manifest["site"].isin(external_sites)]
    if internal["patient_id"].nunique() < 3:
        raise ConfigError("study.external_sites", "fewer than 3 patients left for train/val/test")
    groups = internal["site"] + "/" + internal["patient_id"]
    outer = GroupShuffleSplit(n_splits=1, test_size=test_fraction, random_state=seed)
    rest_idx, test_idx = next(outer.split(internal, groups=groups))
    rest = internal.iloc[rest_idx]
    inner = GroupShuffleSplit(n_splits=1, test_size=val_fraction / (1 - test_fraction), random_state=seed + 1)
    train_idx, val_idx = next(inner.split(rest, groups=groups.iloc[rest_idx]))
    split[internal.index[test_idx]] = "test"
    split[rest.index[train_idx]] = "train"
    split[rest.index[val_idx]] = "val"
    return split


def check_leakage(manifest: pd.DataFrame, image_hashes: list[str]) -> None:
    """Raise LeakageError if a patient, an instance or an identical image spans two splits."""
    patients = manifest.assign(key=manifest["site"] + "/" + manifest["patient_id"]).groupby("key")["split"].nunique()
    crossing = patients[patients > 1]
    if len(crossing):
        raise LeakageError(f"{len(crossing)} patient(s) in more than one split, e.g. {list(crossing.index[:3])}")
    duplicated = manifest["sop_instance_uid"].duplicated(keep=False)
    if duplicated.any():
        raise LeakageError(f"SOP Instance UID(s) appear twice: {list(manifest.loc[duplicated, 'sop_instance_uid'][:3])}")
    by_hash = pd.DataFrame({"hash": image_hashes, "split": manifest["split"].to_numpy()}).groupby("hash")["split"].nunique()
    if (by_hash > 1).any():
        raise LeakageError(f"{int((by_hash > 1).sum())} identical image(s) found in more than one split")


def split_counts(manifest: pd.DataFrame) -> dict:
    """Return images, patients and positives per split and site."""
    out = {}
    for (split, site), rows in manifest.groupby(["split", "site"]):
        out.setdefault(split, {})[site] = {"images": int(len(rows)), "patients": int(rows["patient_id"].nunique()),
                                           "positives": int(rows["label"].sum())}
    return out

