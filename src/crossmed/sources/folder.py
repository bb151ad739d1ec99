"""data.source=folder: a folder of DICOM, NIfTI or PNG/JPEG images described by a CSV manifest (data.manifest).

De-identify rewrites every image under a neutral name and pseudonymises the manifest; read takes the
de-identified images onto the grid, with the manifest's sites, patients, labels, splits and subgroups.
"""

import logging
from pathlib import Path

import pandas as pd

from crossmed.data.dicom_images import read_acquisition_device
from crossmed.data.image_files import image_kind
from crossmed.data.manifest import ManifestSpec, check_manifest, image_id, read_manifest
from crossmed.deid.folder import deidentify_folder
from crossmed.errors import ConfigError, InputError
from crossmed.sources.base import DataSource, SourceTable, check_path, label_strings, read_files_onto_grid, write_deidentified

log = logging.getLogger("crossmed.preprocess")


def folder_table(deid_dir: str | Path, data_cfg) -> SourceTable:
    """Return the images of the de-identified folder manifest (written by the deidentify stage)."""
    deid_dir = Path(deid_dir)
    spec = ManifestSpec.from_config(data_cfg)
    path = deid_dir / "manifest.csv"
    if not path.is_file():
        raise InputError(path, "no de-identified manifest; run the deidentify stage with data.source=folder")
    table = read_manifest(path, spec)
    labels = check_manifest(path, table, spec, deid_dir)
    if spec.task.type != "multilabel" and len(table) and labels.max() > spec.task.label_max:
        raise ConfigError("data.classes", f"labels reach {labels.max()} but only {len(spec.task.classes)} classes are named")
    rows = pd.DataFrame({"site": table[spec.site], "patient_id": table[spec.patient_id],
                         "image_id": [image_id(p) for p in table[spec.image]],
                         "label": label_strings(labels), "split": table[spec.split] if spec.split else "",
                         "source_path": table[spec.image], "path": [str(deid_dir / p) for p in table[spec.image]]})
    subgroups = list(spec.subgroups)
    for column in subgroups:
        rows[column] = table[column].to_numpy()
    if "device" not in subgroups and any(image_kind(p) == "dicom" for p in rows["path"]):
        rows["device"] = [read_acquisition_device(p) if image_kind(p) == "dicom" else "" for p in rows["path"]]
        subgroups.append("device")
        log.info("device subgroup from the DICOM headers: %s", dict(rows["device"].replace("", "unknown").value_counts()))
    log.info("read %s: %d images from %d sites", path, len(rows), rows["site"].nunique())
    return SourceTable(rows, labels, spec.task, subgroups, {"type": "folder", "manifest": str(data_cfg.manifest)})


class FolderSource(DataSource):
    """A site's own image folder named by data.path, with its manifest (data.manifest) and columns (data.columns)."""

    name = "folder"
    format = "an image folder with a manifest"

    def check_input(self, cfg) -> None:
        """Raise InputError unless data.path is a folder."""
        check_path(cfg, "a folder", Path.is_dir)

    def deidentify(self, cfg) -> dict:
        """Write the de-identified images and the pseudonymised manifest to paths.deidentified."""
        return write_deidentified(cfg, lambda out: deidentify_folder(cfg.data.path, out, cfg.data, cfg.deid))

    def read(self, cfg, deid_dir: Path):
        """Read the de-identified manifest and bring its images onto the grid of data.image_size."""
        return read_files_onto_grid(cfg, folder_table(deid_dir, cfg.data))


SOURCE = FolderSource()
