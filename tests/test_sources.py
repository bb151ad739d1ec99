"""Study sources end to end through the library: MedMNIST files of every task type in 2D and 3D, and image folders."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from conftest import SHARED, run_stages, tiny_config
from crossmed.data.processed import ProcessedData
from crossmed.data.split import LeakageError
from crossmed.deid.folder import check_folder_name
from crossmed.errors import ConfigError, InputError
from crossmed.inference.exported import ExportedModel
from crossmed.inference.predict import predict_files
from test_medmnist import write_npz

MEDMNIST = ["data=medmnist", "data.image_size=null", "train.max_epochs=1", "train.batch_size=8",
            "export.formats=[torchscript]"]  # ONNX, MLflow model and bundle are exported and checked in test_export_predict


@pytest.mark.parametrize("subset,task,outputs", [
    ("breastmnist", "binary", 2), ("pathmnist", "multiclass", 9), ("chestmnist", "multilabel", 14),
    ("retinamnist", "ordinal", 5), ("nodulemnist3d", "binary", 2), ("organmnist3d", "multiclass", 11)])
def test_medmnist_study_of_every_task_type(tmp_path, subset, task, outputs):
    npz = write_npz(tmp_path / f"{subset}.npz", subset, n=10)
    cfg = tiny_config(tmp_path, *MEDMNIST, f"data.subset={subset}", f"data.path={npz}")
    run_stages(cfg)
    data = ProcessedData.load(cfg.paths.processed)
    assert data.task.type == task and data.task.outputs == outputs
    assert set(data.manifest["split"]) == {"train", "val", "test"}, "official splits kept"
    assert data.card["source"]["official_md5"].startswith("differs"), "a home-made file is not the published one"
    assert data.images.shape[1:] == (data.task.channels, *(28,) * data.task.spatial_dims)
    metrics = json.loads(Path(cfg.paths.metrics).read_text())
    assert set(metrics) == {"internal_test"} and 0 <= metrics["internal_test"]["auc"] <= 1
    if task == "ordinal":
        assert "quadratic_kappa" in metrics["internal_test"]
    report = (Path(cfg.paths.experiments) / "reports" / "validation_report.md").read_text()
    assert "## Performance" in report and "auc_ci_low" in metrics["internal_test"], "every task type gets intervals"
    assert ("mean_absolute_error" in metrics["internal_test"]) == (task == "ordinal")
    evaluation = Path(cfg.paths.experiments) / "evaluation"
    groups = pd.read_csv(evaluation / "metrics_by_group.csv")
    site_auc = groups[(groups["group"] == "site") & (groups["metric"] == "auc")]
    assert site_auc["value"].tolist() == pytest.approx([metrics["internal_test"]["auc"]]), "site tables for every task type"
    calibration = json.loads((evaluation / "calibration.json").read_text())
    assert metrics["internal_test"]["ece"] == calibration["sets"]["internal_test"]["before"]["ece"]
    assert "## Sites and subgroups" in report and "## Calibration" in report
    assert (evaluation / "gradcam").is_dir() != (task == "multilabel"), "Grad-CAM for single-label tasks"
    exported = ExportedModel.load(Path(cfg.paths.models) / "export")
    results = {r["file"]: r for r in predict_files(exported, [npz])}  # the MedMNIST file itself, raw uint8 in
    table = pd.read_csv(evaluation / "predictions_internal_test.csv", dtype={"image_id": str})
    for row in table.itertuples():
        got = list(results[f"{npz}:test_images[{int(row.image_id.split('-')[1])}]"]["probabilities"].values())
        want = [1 - row.probability, row.probability] if task == "binary" else [getattr(row, f"p_{i}") for i in range(outputs)]
        assert got == pytest.approx(want, abs=2e-6), "predict applies the training preprocessing"
    model = json.loads((Path(cfg.paths.models) / "export" / "model" / "model.json").read_text())
    assert model["inputs"]["image"]["shape"] == [-1, *data.images.shape[1:]]
    assert model["outputs"]["probabilities"]["activation"] == ("sigmoid per label" if task == "multilabel" else "softmax")


def test_medmnist_file_is_resized_when_asked(tmp_path):
    npz = write_npz(tmp_path / "b.npz", "breastmnist", n=8)
    cfg = tiny_config(tmp_path, *MEDMNIST, "data.image_size=40", f"data.path={npz}")
    run_stages(cfg, through="preprocess")
    data = ProcessedData.load(cfg.paths.processed)
    assert data.images.shape[1:] == (1, 40, 40) and "resize to 40 px" in " ".join(data.card["preprocessing"])
    cfg = tiny_config(tmp_path, *MEDMNIST, "data.size=64", f"data.path={npz}")
    with pytest.raises(InputError, match="holds 28 px images but data.size is 64"):
        run_stages(cfg, through="preprocess")


def _png(path: Path, value: int, size=(40, 30)) -> None:
    rng = np.random.default_rng(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, size[::-1], dtype=np.uint8)).save(path)


def _nifti(path: Path, value: int, shape=(20, 24, 16), zooms=(1.5, 1.5, 2.0)) -> None:
    rng = np.random.default_rng(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(rng.normal(100, 20, shape).astype(np.float32), np.diag([*zooms, 1.0]))
    nib.save(image, path)


def _keys(folder: Path, sites) -> None:
    (folder / "keys").mkdir(parents=True, exist_ok=True)
    for site in sites:
        (folder / "keys" / f"{site}.key").write_text(f"test-key-of-site-{site}-0123456789\n")


def _folder_study(tmp_path: Path, tiny_study, dicom: int = 6) -> Path:
    """PNG images from sites A and B, plus real DICOM (with PHI) of the tiny synthetic KR site."""
    folder = tmp_path / "site_export"
    rows = []
    for i in range(24):
        site = "A" if i < 16 else "B"
        name = f"{site}/Patient {i // 2} Kim/img{i}.png"  # names in paths, as hospital exports have
        _png(folder / name, i)
        rows.append({"image": name, "patient_id": f"MRN{i // 2:04d}", "site": site, "label": ["negative", "positive"][i % 2],
                     "sex": "FM"[i % 2], "age": str(20 + i)})
    labels = pd.read_csv(Path(tiny_study.paths.raw) / "KR" / "labels.csv", dtype=str)
    for number, path in enumerate(sorted((Path(tiny_study.paths.raw) / "KR" / "dicom").rglob("*.dcm"))[:dicom]):
        ds = pydicom.dcmread(path)
        target = folder / "dicom" / f"{number}_{path.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        label = labels.loc[labels.sop_instance_uid == ds.SOPInstanceUID, "finding"].iloc[0]
        rows.append({"image": f"dicom/{target.name}", "patient_id": ds.PatientID, "site": "A", "label": label,
                     "sex": str(ds.get("PatientSex", "")), "age": "95"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    _keys(folder, ["A", "B"])
    return folder


def test_folder_of_png_and_dicom_is_deidentified_and_preprocessed(tmp_path, tiny_study):
    folder = _folder_study(tmp_path, tiny_study)
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}", "study.external_sites=[B]", "data.image_size=32")
    run_stages(cfg, through="train")
    deid = Path(cfg.paths.deidentified)
    manifest = pd.read_csv(deid / "manifest.csv", dtype=str)
    assert not manifest["patient_id"].str.startswith("MRN").any() and manifest["patient_id"].str.match(r"^[AB]-").all()
    assert not manifest["image"].str.contains("Kim").any(), "source paths with names stay on site"
    assert (manifest["image"].str.startswith("dicom/A/")).sum() == 6 and (manifest["age"] == "90").sum() == 6
    text = "".join(p.read_text(errors="ignore") for p in deid.rglob("*.csv"))
    raw_ids = {pd.read_csv(folder / "manifest.csv", dtype=str)["patient_id"].iloc[-1]}
    assert not any(r in text for r in raw_ids)
    data = ProcessedData.load(cfg.paths.processed)
    assert data.images.shape[1:] == (1, 32, 32)
    assert set(data.manifest.loc[data.manifest.site == "B", "split"]) == {"external_test"}
    shapes = data.card["splits"]["external_test"]["sites"]["B"]["source_shape"]
    assert shapes == {"30x40": 8}
    assert any("DICOM" in step for step in data.card["preprocessing"])
    devices = data.manifest.set_index("image_id")["device"].fillna("")
    assert "device" in data.card["subgroups"] and (devices != "").sum() == 6, "DICOM headers name the device, PNGs do not"


def test_folder_problems_are_reported_together(tmp_path, tiny_study):
    folder = _folder_study(tmp_path, tiny_study, dicom=0)
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str)
    manifest.loc[1, "label"] = "maybe"
    manifest.loc[2, "image"] = "A/missing.png"
    (folder / manifest.loc[5, "image"]).write_bytes(b"not a png")
    manifest = pd.concat([manifest, manifest.iloc[[3]]])
    manifest.to_csv(folder / "manifest.csv", index=False)
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}")
    with pytest.raises(InputError) as err:
        run_stages(cfg, through="deidentify")
    message = str(err.value)
    assert "4 problem(s)" in message and "row 3: unknown label in column 'label'" in message and "unreadable image" in message
    assert "row 4: file not found" in message and "image listed twice" in message
    assert "Kim" not in message and "maybe" not in message, "raw paths and cells are not quoted: they can hold names"
    assert not Path(cfg.paths.deidentified).exists()


@pytest.mark.parametrize("path,refused", [
    ("/exports/KW63034978/study", True), ("/exports/홍길동_800101-1234567", True), ("/exports/2024/03/13/cases", True),
    ("/tmp/pytest-of-root/pytest-100/test_nifti_volumes_train_in_3d0/volumes", False), ("/srv/site-2/cohort_3d1", False)])
def test_a_study_folder_named_after_a_patient_is_refused(path, refused):
    if refused:
        with pytest.raises(ConfigError, match="data.path.*holds an identifier"):
            check_folder_name(Path(path))
    else:
        check_folder_name(Path(path))  # numbered work folders are no identifier: words across '/' are not joined


def test_unreadable_images_are_reported_together(tmp_path, tiny_study):
    folder = _folder_study(tmp_path, tiny_study, dicom=0)
    for name in ("A/Patient 0 Kim/img0.png", "B/Patient 9 Kim/img19.png"):
        (folder / name).write_bytes(b"not a png")
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}")
    with pytest.raises(InputError) as err:
        run_stages(cfg, through="preprocess")
    assert "2 problem(s)" in str(err.value) and str(err.value).count("unreadable image") == 2
    assert not Path(cfg.paths.processed).exists()


def test_given_splits_with_a_patient_in_two_splits_stop_the_run(tmp_path, tiny_study):
    folder = _folder_study(tmp_path, tiny_study, dicom=0)
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str)
    manifest["split"] = ["train", "val", "test"] * 8  # patient MRN0000 (rows 0, 1) in train and val
    manifest.to_csv(folder / "manifest.csv", index=False)
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}", "data.columns.split=split")
    with pytest.raises(LeakageError, match=r"12 patient\(s\) in more than one split: A/A-\w+ in (test|train), (train|val)"):
        run_stages(cfg, through="preprocess")


def test_nifti_volumes_train_in_3d(tmp_path):
    folder = tmp_path / "volumes"
    rows = []
    for i in range(16):
        _nifti(folder / f"vol{i}.nii.gz", i, zooms=(1.5, 1.5, 2.0) if i % 2 else (1.0, 1.0, 1.0))
        rows.append({"image": f"vol{i}.nii.gz", "patient_id": f"P{i}", "site": "EE", "label": str(i % 3)})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    _keys(folder, ["EE"])
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}", "data.spatial_dims=3", "data.image_size=16",
                      "data.spacing_mm=2.0", "data.task=ordinal", "data.classes=[none,mild,severe]", "data.subgroups=[]",
                      "train.max_epochs=1")
    run_stages(cfg)
    data = ProcessedData.load(cfg.paths.processed)
    assert data.images.shape[1:] == (1, 16, 16, 16) and data.task.spatial_dims == 3
    assert set(data.manifest["source_spacing_mm"]) == {"1x1x1", "1.5x1.5x2"}
    model = json.loads((Path(cfg.paths.models) / "export" / "model" / "model.json").read_text())
    assert model["inputs"]["image"]["layout"] == "NCDHW"
    assert model["parity"]["onnx"]["passed"] and model["parity"]["onnx"]["tolerance"] <= 1e-4, "3D round trip through ONNX"
    evaluated = pd.read_csv(Path(cfg.paths.experiments) / "evaluation" / "predictions_internal_test.csv", dtype={"image_id": str})
    volumes = [Path(cfg.paths.deidentified) / p for p in data.manifest.set_index("image_id").loc[evaluated["image_id"], "source_path"]]
    for runtime in ("torchscript", "onnx"):
        results = predict_files(ExportedModel.load(Path(cfg.paths.models) / "export", runtime), volumes,
                                saliency_dir=tmp_path / "cams" if runtime == "torchscript" else None)
        for result, row in zip(results, evaluated.itertuples()):
            assert list(result["probabilities"].values()) == pytest.approx([row.p_0, row.p_1, row.p_2], abs=1e-4)
    assert len(list((tmp_path / "cams").glob("*.png"))) == len(volumes), "Grad-CAM of 3D volumes (middle slice)"


@pytest.mark.skipif(not (SHARED / "data" / "breastmnist.npz").is_file(), reason="../shared/data/breastmnist.npz absent")
def test_real_breastmnist_duplicate_across_official_splits(tmp_path):
    cfg = tiny_config(tmp_path, *MEDMNIST, f"data.path={SHARED / 'data' / 'breastmnist.npz'}")
    with pytest.raises(LeakageError, match=r"1 identical image\(s\) in more than one split: train-000115 \(train\), test-000076 \(test\)"):
        run_stages(cfg, through="preprocess")
    cfg.data.leakage = "drop"
    run_stages(cfg, through="preprocess")
    data = ProcessedData.load(cfg.paths.processed)
    assert len(data.manifest) == 779 and data.card["source"]["official_md5"] == "match"
    assert data.card["leakage_check"]["dropped"] == ["train-000115 (train)"]
