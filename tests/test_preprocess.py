"""Preprocess: common grid, patient-level split with the external site held out, leakage check, clear errors."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crossmed.data.preprocess import preprocess_study
from crossmed.data.processed import ProcessedData
from crossmed.data.split import LeakageError, assign_splits, check_leakage
from crossmed.errors import ConfigError, InputError


def test_processed_data_shape_and_split(tiny_study):
    data = ProcessedData.load(tiny_study.paths.processed)
    size = tiny_study.data.image_size
    assert data.images.shape == (len(data.manifest), 1, size, size) and data.images.dtype == np.float32
    assert np.allclose(data.images.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    manifest = data.manifest
    assert set(manifest.loc[manifest.site == "EE", "split"]) == {"external_test"}
    assert set(manifest.loc[manifest.site == "KR", "split"]) == {"train", "val", "test"}
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1
    card = data.card
    assert card["sites"]["KR"]["source_rows"] != card["sites"]["EE"]["source_rows"]
    assert sum(s["images"] for split in card["splits"].values() for s in split.values()) == len(manifest)


def _manifest(patients):
    rows = [{"site": site, "patient_id": pid, "sop_instance_uid": f"{site}{pid}.{i}", "label": i % 2}
            for site, pid, n in patients for i in range(n)]
    return pd.DataFrame(rows)


def test_split_is_by_patient_and_seeded():
    manifest = _manifest([("A", f"p{i}", 1 + i % 4) for i in range(60)] + [("B", f"q{i}", 2) for i in range(10)])
    split = assign_splits(manifest, ["B"], 0.2, 0.2, seed=1)
    assert (split[manifest.site == "B"] == "external_test").all()
    per_patient = manifest.assign(split=split).groupby("patient_id")["split"].nunique()
    assert per_patient.max() == 1
    assert split.equals(assign_splits(manifest, ["B"], 0.2, 0.2, seed=1))
    assert not split.equals(assign_splits(manifest, ["B"], 0.2, 0.2, seed=2))
    with pytest.raises(ConfigError, match="study.external_sites"):
        assign_splits(manifest, ["C"], 0.2, 0.2, seed=1)
    with pytest.raises(ConfigError, match="data.split"):
        assign_splits(manifest, ["B"], 0.6, 0.5, seed=1)


def test_leakage_check_catches_patient_and_duplicate_image():
    manifest = _manifest([("A", "p1", 2), ("A", "p2", 1)]).assign(split=["train", "test", "test"])
    with pytest.raises(LeakageError, match="patient"):
        check_leakage(manifest, ["h1", "h2", "h3"])
    manifest["split"] = ["train", "train", "test"]
    with pytest.raises(LeakageError, match="identical image"):
        check_leakage(manifest, ["h1", "h2", "h1"])
    check_leakage(manifest, ["h1", "h2", "h3"])


def test_unreadable_dicom_is_named(tiny_study, tmp_path):
    deid = tmp_path / "deid"
    shutil.copytree(tiny_study.paths.deidentified, deid)
    victim = sorted((deid / "KR").rglob("*.dcm"))[0]
    victim.write_bytes(b"garbage")
    with pytest.raises(InputError) as err:
        preprocess_study(deid, tmp_path / "out", ["KR", "EE"], ["EE"], 32, 2.0, 0.2, 0.2, 1)
    assert str(victim) in str(err.value)
    assert not (tmp_path / "out").exists(), "nothing half-written"


def test_label_table_problems_are_named(tiny_study, tmp_path):
    deid = tmp_path / "deid"
    shutil.copytree(tiny_study.paths.deidentified, deid)
    labels = pd.read_csv(deid / "KR" / "labels.csv", dtype=str)
    labels.iloc[1:].to_csv(deid / "KR" / "labels.csv", index=False)
    with pytest.raises(InputError, match="has no row in"):
        preprocess_study(deid, tmp_path / "out", ["KR", "EE"], ["EE"], 32, 2.0, 0.2, 0.2, 1)
    labels.assign(finding="maybe").to_csv(deid / "KR" / "labels.csv", index=False)
    with pytest.raises(InputError, match="'finding' must be 0 or 1"):
        preprocess_study(deid, tmp_path / "out", ["KR", "EE"], ["EE"], 32, 2.0, 0.2, 0.2, 1)
    with pytest.raises(InputError, match="no de-identified folder for site XX"):
        preprocess_study(deid, tmp_path / "out", ["XX"], [], 32, 2.0, 0.2, 0.2, 1)
