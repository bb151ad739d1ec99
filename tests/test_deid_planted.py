"""PHI planted where de-identifiers miss it: nested sequences, private tags, retained free text; pixels unchanged."""

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from crossmed.cli import main
from crossmed.deid.profile import load_profile
from crossmed.deid.settings import DeidSettings
from crossmed.deid.tree import deidentify_tree

KEY = b"planted-phi-test-key-0123456789"
RRN = "710309-1234567"  # format only; the scanner also checks the date and check digit
PHI = ["Hong^Gildong", "Hong", "Gildong", "홍길동", "PID-778899", "19710309", "ACC-55512", "Seoul National Clinic",
       "+82 10 5555 0101", "Dr^Secret", "PRIVATE-PHI-VALUE", "NESTED-PHI-NAME"]


def _rrn() -> str:
    from datetime import date
    from crossmed.national_ids import make_korean_rrn
    return make_korean_rrn(date(1971, 3, 9), True, 12345)


def planted_file(path: Path, charset="ISO_IR 192") -> np.ndarray:
    """Write a DX file with PHI in the top level, three levels of sequences, a private block and free text."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series"])
    ds.Modality = "DX"
    ds.PatientName = "Hong^Gildong=홍^길동"
    ds.PatientID = "PID-778899"
    ds.PatientBirthDate = "19710309"
    ds.AccessionNumber = "ACC-55512"
    ds.InstitutionName = "Seoul National Clinic"
    ds.PatientTelephoneNumbers = "+82 10 5555 0101"
    ds.StudyDate = "20240105"
    ds.StudyDescription = f"CXR 홍길동 {_rrn()}"  # retained by clean_descriptors, so the scanner must clean it
    ds.ImageComments = "call +82 10 5555 0101"
    inner = Dataset()
    inner.PatientName = "NESTED-PHI-NAME"
    inner.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    inner.ReferencedSOPClassUID = ds.SOPClassUID
    middle = Dataset()
    middle.SourceImageSequence = [inner]
    middle.PerformingPhysicianName = "Dr^Secret"
    middle.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    middle.ReferencedSOPClassUID = ds.SOPClassUID
    outer = Dataset()
    outer.ReferencedImageSequence = [middle]
    outer.RequestedProcedureDescription = "Hong chest"
    ds.ProcedureCodeSequence = [outer]  # not in the profile itself: only its items' attributes are
    block = ds.private_block(0x0041, "ACME PHI", create=True)
    block.add_new(0x01, "LO", "PRIVATE-PHI-VALUE")
    private_item = Dataset()
    private_item.PatientName = "Hong^Gildong"
    block.add_new(0x02, "SQ", [private_item])
    ds.BurnedInAnnotation = "NO"
    pixels = np.arange(16 * 16, dtype=np.uint16).reshape(16, 16)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 16, 16, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return pixels


def _decoded_bytes(path: Path) -> str:
    """Return a file's bytes decoded as every encoding its values could use (UTF-8, EUC-KR, Latin-1)."""
    data = path.read_bytes()
    return "\n".join(data.decode(codec, errors="ignore") for codec in ("utf-8", "euc_kr", "latin-1"))


@pytest.mark.parametrize("charset", ["ISO_IR 192", ["", "ISO 2022 IR 149"]], ids=["utf8", "korean"])
def test_planted_phi_is_gone_from_every_byte(tmp_path, charset):
    pixels = planted_file(tmp_path / "src" / "a" / "IM1.dcm", charset)
    out = tmp_path / "out"
    summary = deidentify_tree(tmp_path / "src", out, DeidSettings(load_profile(["clean_descriptors", "retain_long_modified_dates"]), KEY),
                              mapping_out=tmp_path / "mapping.csv")
    assert summary.written == 1
    written = [p for p in out.rglob("*") if p.is_file()]
    for path in written:
        text = _decoded_bytes(path)
        leaked = [value for value in [*PHI, _rrn()] if value in text]
        assert leaked == [], f"{path.name} holds {leaked}"
    ds = pydicom.dcmread(next(out.rglob("*.dcm")))
    assert np.array_equal(ds.pixel_array, pixels)
    inner = ds.ProcedureCodeSequence[0].ReferencedImageSequence[0].SourceImageSequence[0]
    assert inner.ReferencedSOPInstanceUID == ds.SOPInstanceUID  # the reference follows the pseudonymous UID
    assert "CXR" in ds.StudyDescription and "[REMOVED]" in ds.StudyDescription
    mapping = list(csv.DictReader(open(tmp_path / "mapping.csv", encoding="utf-8")))
    assert mapping[0]["real_patient_id"] == "PID-778899"  # the mapping exists only where asked for


def test_table_joins_images_after_deidentification(tmp_path):
    planted_file(tmp_path / "src" / "IM1.dcm")
    raw = pydicom.dcmread(tmp_path / "src" / "IM1.dcm")
    (tmp_path / "site.key").write_bytes(KEY)
    pd.DataFrame([{"patient_id": raw.PatientID, "name": "Hong^Gildong", "sop_instance_uid": raw.SOPInstanceUID,
                   "study_date": "2024-01-05", "age": "93", "sex": "M", "notes": "RRN on file",
                   "comment": f"seen by Dr. Tamm; patient GIL-DONG, {_rrn()}"}]).to_csv(tmp_path / "clinical.csv", index=False)
    assert main(["deidentify", str(tmp_path / "src"), str(tmp_path / "out"), "--key-file", str(tmp_path / "site.key"),
                 "--option", "retain_long_modified_dates", "--patient-prefix", "KR-"]) == 0
    assert main(["deidentify-table", str(tmp_path / "clinical.csv"), str(tmp_path / "clinical_deid.csv"), "--key-file",
                 str(tmp_path / "site.key"), "--patient-prefix", "KR-", "--name-column", "name", "--keep-column", "age",
                 "--keep-column", "sex", "--keep-column", "comment", "--uid-column", "sop_instance_uid",
                 "--date-column", "study_date"]) == 0
    table = pd.read_csv(tmp_path / "clinical_deid.csv", dtype=str)
    image = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert list(table.columns) == ["patient_id", "sop_instance_uid", "study_date", "age", "sex", "comment"]
    written = (tmp_path / "clinical_deid.csv").read_text(encoding="utf-8")
    assert not [v for v in ("Hong", "GIL-DONG", "Tamm", _rrn(), "RRN on file") if v in written]  # notes: not kept
    row = table.iloc[0]
    assert (row.patient_id, row.sop_instance_uid) == (image.PatientID, image.SOPInstanceUID)
    assert row.study_date.replace("-", "") == image.StudyDate and row.age == "90"
