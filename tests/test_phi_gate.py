"""The predict-time PHI gate reads the content: files still identifying a patient are refused whatever flag, VR or
container they hide it in, and crossmed's own output passes."""

import io

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from test_deid_adversarial import PLANT, _settings, base_dataset, write
from test_deid_values import raw
from crossmed.deid.tree import deidentify_tree
from crossmed.inference.phi import phi_findings, read_header


def _flagged(**changes):
    """A data set marked de-identified, with `changes` applied to it."""
    ds = base_dataset()
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "ReferringPhysicianName", "StudyDate"):
        delattr(ds, keyword)
    ds.PatientIdentityRemoved, ds.PatientName, ds.PatientID = "YES", "KR-ABCDEFGHJK234567", "KR-ABCDEFGHJK234567"
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def _findings(tmp_path, ds) -> list[str]:
    path = write(ds, tmp_path / "f.dcm")
    return phi_findings(*read_header(path))


def test_crossmed_output_passes(tmp_path):
    write(base_dataset(), tmp_path / "src" / "a.dcm")
    deidentify_tree(tmp_path / "src", tmp_path / "out", _settings())
    assert phi_findings(*read_header(next((tmp_path / "out").rglob("*.dcm")))) == []


@pytest.mark.parametrize("changes, finding", [
    ({"PatientName": "Tamm-Kristjanaleksander"}, "PatientName holds"),  # shaped like prefix + 16 characters
    ({"ImageComments": f"RRN {PLANT}"}, "korean_rrn"),
    ({"SeriesNumber": "202403130042"}, "number as long as an ID"),
    ({"SOPInstanceUID": "1.2.410.200013.1.8001011234567"}, "UID of the site's own"),
    ({"SpecificCharacterSet": ["ISO_IR 100", "KW63034978"]}, "term no standard defines"),
    ({"Modality": "OT", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7", "BurnedInAnnotation": None}, "burned-in text"),
    ({"RecognizableVisualFeatures": "YES"}, "Recognizable Visual Features"),
], ids=["pseudonym-shaped name", "rrn in comments", "accession as series number", "pacs uid", "charset", "sc", "face"])
def test_identifying_content_behind_the_flag_is_found(tmp_path, changes, finding):
    ds = _flagged(**{k: v for k, v in changes.items() if v is not None})
    for keyword in (k for k, v in changes.items() if v is None):
        delattr(ds, keyword)
    assert any(finding in f for f in _findings(tmp_path, ds)), _findings(tmp_path, ds)


def test_odd_vrs_icons_and_the_container_are_read_too(tmp_path):
    ds = _flagged()
    raw(ds, 0x00100010, "UC", b"Hong^Gildong")  # the name in a VR the gate might not read as a name
    raw(ds, 0x00100030, "OB", b"19800101")
    icon = pydicom.Dataset()
    icon.Rows = 1
    ds.IconImageSequence = [icon]
    ds.preamble = PLANT.encode("utf-8").ljust(128, b"\0")
    ds.file_meta.PrivateInformationCreatorUID, ds.file_meta.PrivateInformation = "1.2.3", b"secret"
    findings = " | ".join(_findings(tmp_path, ds))
    for expected in ("PatientName written with VR UC", "PatientBirthDate written with VR OB", "IconImageSequence present",
                     "preamble holds data", "file meta PrivateInformation present"):
        assert expected in findings
    compressed = _flagged()
    buffer = io.BytesIO()
    from PIL import Image

    Image.new("L", (16, 16)).save(buffer, format="JPEG", comment=PLANT.encode("utf-8"))
    compressed.PixelData = encapsulate([buffer.getvalue()])
    compressed["PixelData"].VR = "OB"
    compressed.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    assert any("codec segments" in f for f in _findings(tmp_path, compressed))
