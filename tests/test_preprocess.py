"""Preprocess of the built-in DICOM sites: memory-mapped output, stratified patient-level splits, leakage, data card, errors."""

import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
from crossmed.stages import preprocess as preprocess_stage
from crossmed.data.processed import ProcessedData
from crossmed.data.split import LeakageError, assign_splits, check_leakage
from crossmed.errors import ConfigError, InputError


def test_processed_data_is_memory_mapped_with_labels_manifest_and_card(tiny_study):
    data = ProcessedData.load(tiny_study.paths.processed)
    size = tiny_study.data.image_size
    assert isinstance(data.images, np.memmap) and data.images.dtype == np.float32
    assert data.images.shape == (len(data.manifest), 1, size, size) and data.labels.shape == (len(data.manifest), 1)
    assert np.allclose(np.asarray(data.images).mean(axis=(1, 2, 3)), 0, atol=1e-4)
    manifest = data.manifest
    assert set(manifest.loc[manifest.site == "EE", "split"]) == {"external_test"}
    assert set(manifest.loc[manifest.site == "KR", "split"]) == {"train", "val", "test"}
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1
    assert (manifest["label"].astype(int) == data.labels[:, 0]).all()
    card = data.card
    assert card["task"] == {"type": "binary", "classes": ["no_opacity", "opacity"], "channels": 1, "spatial_dims": 2}
    ee = card["splits"]["external_test"]["sites"]["EE"]
    assert ee["images"] == int((manifest.site == "EE").sum()) and set(ee["source_shape"]) == {"80x80"}
    assert set(card["splits"]["train"]["sites"]["KR"]["source_shape"]) == {"96x96"}
    assert sum(s["all"]["images"] for s in card["splits"].values()) == len(manifest)
    assert set(card["splits"]["train"]["all"]["sex"]) <= {"F", "M", "O", "unknown"}
    assert card["splits"]["train"]["all"]["age"]["n"] > 0
    markdown = (tiny_study.paths.processed + "/data_card.md")
    text = open(markdown, encoding="utf-8").read()
    assert "| external_test / EE |" in text and "z-score" in text


def _manifest(patients, label=lambda i: i % 2):
    rows = [{"site": site, "patient_id": pid, "image_id": f"{site}{pid}.{i}", "label": str(label(i)),
             "content_hash": f"{site}{pid}.{i}"} for site, pid, n in patients for i in range(n)]
    return pd.DataFrame(rows)


def test_split_is_by_patient_stratified_and_seeded():
    manifest = _manifest([("A", f"p{i}", 1 + i % 4) for i in range(80)] + [("B", f"q{i}", 2) for i in range(10)],
                         label=lambda i: int(i == 0))
    split = assign_splits(manifest, ["B"], 0.2, 0.25, seed=1)
    assert (split[manifest.site == "B"] == "external_test").all()
    assert manifest.assign(split=split).groupby("patient_id")["split"].nunique().max() == 1
    prevalence = manifest.assign(split=split)[manifest.site == "A"].groupby("split")["label"].apply(lambda s: (s == "1").mean())
    assert prevalence.max() - prevalence.min() < 0.12, prevalence  # stratified by label
    assert split.equals(assign_splits(manifest, ["B"], 0.2, 0.25, seed=1))
    assert not split.equals(assign_splits(manifest, ["B"], 0.2, 0.25, seed=2))
    with pytest.raises(ConfigError, match="study.external_sites"):
        assign_splits(manifest, ["C"], 0.2, 0.2, seed=1)
    with pytest.raises(ConfigError, match="data.split"):
        assign_splits(manifest, ["B"], 0.6, 0.5, seed=1)


def test_train_sites_restrict_training_to_named_sites():
    manifest = _manifest([("A", f"p{i}", 2) for i in range(30)] + [("C", f"r{i}", 2) for i in range(12)]
                         + [("B", f"q{i}", 2) for i in range(5)])
    split = assign_splits(manifest, ["B"], 0.2, 0.25, seed=3, train_sites=["A"])
    assert set(split[manifest.site == "C"]) == {"test"}
    assert set(split[manifest.site == "A"]) == {"train", "val", "test"}
    with pytest.raises(ConfigError, match="study.train_sites"):
        assign_splits(manifest, ["B"], 0.2, 0.25, seed=3, train_sites=["B"])


def test_leakage_check_names_patients_and_identical_images():
    manifest = _manifest([("A", "p1", 2), ("A", "p2", 1)]).assign(split=["train", "test", "test"])
    with pytest.raises(LeakageError, match=r"A/p1 in test, train"):
        check_leakage(manifest)
    manifest = manifest.assign(split=["train", "train", "test"], content_hash=["h1", "h2", "h1"])
    with pytest.raises(LeakageError, match=r"Ap1\.0 \(train\), Ap2\.0 \(test\)"):
        check_leakage(manifest)
    keep, report = check_leakage(manifest, "drop")
    assert keep.tolist() == [False, True, True] and report["dropped"] == ["Ap1.0 (train)"]
    keep, report = check_leakage(manifest.assign(content_hash=["h1", "h2", "h3"]))
    assert keep.all() and report["identical_images_across_splits"] == 0


def test_every_unreadable_image_is_named_and_nothing_is_written(tiny_study, tmp_path):
    deid = tmp_path / "deid"
    shutil.copytree(tiny_study.paths.deidentified, deid)
    victims = sorted((deid / "KR").rglob("*.dcm"))[:2]
    for victim in victims:
        victim.write_bytes(b"garbage")
    cfg = tiny_config(tmp_path, f"paths.deidentified='{deid}'", f"paths.processed='{tmp_path / 'out'}'")
    with pytest.raises(InputError) as err:
        preprocess_stage.run(cfg)
    assert "2 problem(s)" in str(err.value) and all(str(v) in str(err.value) for v in victims)
    assert not (tmp_path / "out").exists(), "nothing half-written"


def test_label_table_problems_are_named(tiny_study, tmp_path):
    deid = tmp_path / "deid"
    shutil.copytree(tiny_study.paths.deidentified, deid)
    cfg = tiny_config(tmp_path, f"paths.deidentified='{deid}'", f"paths.processed='{tmp_path / 'out'}'")
    labels = pd.read_csv(deid / "KR" / "labels.csv", dtype=str)
    labels.iloc[1:].to_csv(deid / "KR" / "labels.csv", index=False)
    with pytest.raises(InputError, match="has no row in"):
        preprocess_stage.run(cfg)
    labels.assign(finding="maybe").to_csv(deid / "KR" / "labels.csv", index=False)
    with pytest.raises(InputError, match="'finding' must be 0 or 1"):
        preprocess_stage.run(cfg)
    cfg.study.sites = ["XX"]
    with pytest.raises(InputError, match="no de-identified folder for site XX"):
        preprocess_stage.run(cfg)
