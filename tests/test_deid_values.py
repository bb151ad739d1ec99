"""Values crossmed keeps without reading them as text, planted with PHI: VRs, numbers, UIDs, LUTs, pixel bits,
character sets; and text that names the patient by ID, birth date or in another script."""

import csv
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from test_deid_adversarial import KEY, PLANT, RRN, _settings, base_dataset, leaked, write
from crossmed.cli import main
from crossmed.deid.tree import deidentify_tree
from crossmed.deid.text_scan import person_name_variants, scrub_text


def raw(ds, tag: int, vr: str, value: bytes) -> None:
    """Put an element into `ds` as a source system wrote it, with any VR (pydicom would refuse to encode a mismatch)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    value += b" " * (len(value) % 2)
    ds._dict[Tag(tag)] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)


def _deidentified(tmp_path: Path, ds, **kwargs) -> pydicom.Dataset:
    write(ds, tmp_path / "src" / "a.dcm")
    summary = deidentify_tree(tmp_path / "src", tmp_path / "out", _settings(**kwargs), site_records=tmp_path / "site")
    assert summary.written == 1, dict(summary.reasons)
    return pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))


def test_text_written_as_a_number_or_uid_and_numbers_that_are_ids_are_removed(tmp_path):
    ds = base_dataset()
    ds.AccessionNumber = "202403130042"
    raw(ds, 0x00081030, "UL", PLANT.encode("utf-8"))  # Study Description declared as a number
    raw(ds, 0x00209453, "UI", b"1.2.800101.1234567")  # Frame Label (LO) declared as a UID
    ds.SeriesNumber, ds.AcquisitionNumber = "202403130042", "63034978"  # the accession and the MRN's digits
    ds.PatientWeight = "8001011234567"  # kept by retain_patient_characteristics: a number, not a weight
    ds.InstanceNumber, ds.SliceThickness = "3", "2.5"
    out = _deidentified(tmp_path, ds)
    for keyword in ("StudyDescription", "FrameLabel", "SeriesNumber", "AcquisitionNumber", "PatientWeight"):
        assert keyword not in out, keyword
    assert (out.InstanceNumber, float(out.SliceThickness)) == (3, 2.5)  # ordinary numbers stay
    assert leaked(tmp_path / "out", ["202403130042", "63034978", "8001011234567", "Gildong"]) == []


def test_every_uid_is_re_derived_unless_the_standard_registers_it(tmp_path):
    ds = base_dataset()
    pacs_uid = "1.2.410.200013.1.8001011234567.20240313.1"
    ds.SOPInstanceUIDOfConcatenationSource = pacs_uid  # not in Table E.1-1
    ds.TargetFrameOfReferenceUID = pacs_uid
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
    code.CodingSchemeUID = "2.16.840.1.113883.6.96"  # SNOMED CT: a vocabulary, not an instance
    ds.AnatomicRegionSequence = [code]
    out = _deidentified(tmp_path, ds)
    assert out.SOPInstanceUIDOfConcatenationSource.startswith("2.25.") and out.TargetFrameOfReferenceUID.startswith("2.25.")
    assert out.SOPClassUID == ds.SOPClassUID and out.AnatomicRegionSequence[0].CodingSchemeUID == "2.16.840.1.113883.6.96"
    assert leaked(tmp_path / "out", ["8001011234567", "200013"]) == []


def test_kept_text_loses_the_patients_own_ids_and_birth_date(tmp_path):
    ds = base_dataset()
    ds.PatientID, ds.PatientBirthDate = "HGD771", "19800101"
    ds.StudyDescription = "CT chest F/U for HGD771, DOB 80.01.01, also 01/01/80"
    out = _deidentified(tmp_path, ds)
    assert out.StudyDescription.startswith("CT chest F/U for [REMOVED]")
    assert leaked(tmp_path / "out", ["HGD771", "80.01.01", "01/01/80"]) == []


@pytest.mark.parametrize("pn, text", [("홍^길동", "Chest PA, Gildong Hong; KIL-TONG f/u"), ("Hong^Gildong", "홍길동 흉부 CT"),
                                      ("Ivanov^Sergei", "Сергей Иванов, контроль")])
def test_names_are_found_in_another_script(pn, text):
    scrubbed, kinds = scrub_text(text, person_name_variants(pn))
    assert kinds and not any(word in scrubbed for word in ("Gildong", "Hong", "KIL", "TONG", "홍길동", "Сергей", "Иванов"))


def test_byte_carriers_and_hidden_pixel_bits_are_cut_to_what_the_image_declares(tmp_path):
    ds = base_dataset(np.full((8, 8), 7, np.uint16).astype(np.uint8))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    pixels = np.full((16, 16), 100, np.uint16) | (1 << 14)  # a legacy overlay drawn in bit 14
    ds.Rows = ds.Columns = 16
    ds.PixelData = pixels.tobytes()
    ds.add(DataElement(0x60003000, "OW", b"\xff" * 32))  # overlay plane data
    ds.add(DataElement(0x60000010, "US", 16))  # overlay rows: the overlay's description goes too
    voi = Dataset()
    voi.LUTDescriptor = [4, 0, 16]
    voi.add(DataElement(0x00283006, "OW", np.arange(4, dtype="<u2").tobytes() + PLANT.encode("utf-8")))
    ds.VOILUTSequence = [voi]
    nested = Dataset()
    raw(nested, 0x7FE00010, "OB", PLANT.encode("utf-8"))
    ds.AnatomicRegionSequence = [nested]
    out = _deidentified(tmp_path, ds)
    assert np.array_equal(out.pixel_array, np.full((16, 16), 100))  # bits above Bits Stored are zero
    assert 0x60003000 not in out and 0x60000010 not in out
    assert len(out.VOILUTSequence[0].LUTData) in (4, 8)  # 4 entries (as values or as 16-bit words): the text is cut
    assert "PixelData" not in out.AnatomicRegionSequence[0]
    assert leaked(tmp_path / "out", ["Gildong", RRN]) == []


def test_faces_misdeclared_text_and_unknown_character_sets(tmp_path):
    face = base_dataset()
    face.RecognizableVisualFeatures = "YES"
    write(face, tmp_path / "faces" / "a.dcm")
    summary = deidentify_tree(tmp_path / "faces", tmp_path / "out_faces", _settings())
    assert dict(summary.reasons) == {"recognizable_features": 1}
    ds = base_dataset()
    ds.SpecificCharacterSet = ["ISO_IR 100", "KW63034978"]
    ds.StudyDescription = "홍길동 선생님".encode("euc_kr").decode("latin-1")  # EUC-KR bytes in a Latin-1 file
    out = _deidentified(tmp_path, ds)
    assert out.SpecificCharacterSet == "ISO_IR 100" and out.StudyDescription == "[REMOVED]"
    assert leaked(tmp_path / "out", ["KW63034978", "홍길동"]) == []


def test_clinical_table_text_is_searched_for_every_patient(tmp_path):
    (tmp_path / "k.key").write_bytes(KEY)
    (tmp_path / "t.csv").write_text("patient_id,name,note\nKW1,Kim^Minji,ok\nKW2,Hong^Gildong,mother Kim Minji also seen; "
                                    "chart KW1\n", encoding="utf-8")
    assert main(["deidentify-table", str(tmp_path / "t.csv"), str(tmp_path / "o.csv"), "--key-file", str(tmp_path / "k.key"),
                 "--name-column", "name", "--keep-column", "note"]) == 0
    notes = [row["note"] for row in csv.DictReader(open(tmp_path / "o.csv", encoding="utf-8"))]
    assert notes[0] == "ok" and "Minji" not in notes[1] and "KW1" not in notes[1]


def test_pydicom_warnings_do_not_echo_values(tmp_path):
    ds = base_dataset()
    ds.SpecificCharacterSet = "KW63034978"
    raw(ds, 0x00081155, "UI", b"1.2.410.KW63034978")  # an invalid UID that pydicom would quote
    write(ds, tmp_path / "src" / "a.dcm")
    (tmp_path / "k.key").write_bytes(KEY)
    result = subprocess.run([sys.executable, "-m", "crossmed.cli", "deidentify", str(tmp_path / "src"), str(tmp_path / "out"),
                             "--key-file", str(tmp_path / "k.key"), "--site-records", str(tmp_path / "site")],
                            capture_output=True, text=True, timeout=300)
    assert "KW63034978" not in result.stderr + result.stdout


def test_the_leak_scan_reads_inside_compressed_files(tmp_path):
    import gzip

    from crossmed.deid.leak_scan import scan_files

    (tmp_path / "a.nii.gz").write_bytes(gzip.compress(b"header " + PLANT.encode("utf-8")))
    assert list(scan_files([tmp_path], {"Gildong"}).hits) == [str(tmp_path / "a.nii.gz")]


def test_times_dates_ages_floats_tags_and_class_uids_that_hide_ids_go(tmp_path):
    ds = base_dataset()
    ds.PatientID, ds.PatientBirthDate = "00630349", "19800101"
    ds.ContentTime = RRN  # text where a time belongs
    ds.AcquisitionDateTime = "20240313 KW63034978"  # a valid date, then anything
    ds.PatientAge = "095"  # not an age string: not grouped, so not kept
    raw(ds, 0x00200012, "IS", b"+630349")  # the patient's ID without its zeros, as Acquisition Number
    raw(ds, 0x00180050, "DS", b"0.8001011234567")  # digits of an RRN in a fraction (Slice Thickness)
    raw(ds, 0x00189087, "FD", struct.pack("<d", 8001011234567.0))  # Diffusion b-value as an integral float
    raw(ds, 0x00280009, "AT", b"Hong")  # Frame Increment Pointer: bytes that name no tag
    ds.SOPClassUID = "1.2.410.200013.630349.1"  # a class UID made of the patient's ID
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    out = _deidentified(tmp_path, ds)
    for keyword in ("ContentTime", "AcquisitionDateTime", "PatientAge", "AcquisitionNumber", "SliceThickness",
                    "DiffusionBValue", "FrameIncrementPointer"):
        assert not out.get(keyword), keyword  # removed, or emptied (a date the shift cannot read)
    assert out.SOPClassUID.startswith("2.25.")
    assert leaked(tmp_path / "out", ["630349", "8001011234567", "Hong", "KW63034978"]) == []


def test_code_values_keep_their_digits():
    from pydicom.dataset import Dataset as DataSet

    from crossmed.deid.dicom_dataset import DatasetDeidentifier
    from crossmed.deid.profile import load_profile
    from crossmed.deid.pseudonyms import Pseudonymizer

    ds = base_dataset()
    code = DataSet()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "39607008", "SCT", "Lung structure"
    ds.AnatomicRegionSequence = [code]
    DatasetDeidentifier(load_profile(["clean_descriptors"]), Pseudonymizer(KEY)).apply(ds)
    assert ds.AnatomicRegionSequence[0].CodeValue == "39607008"  # a SNOMED code, not an ID
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


@pytest.mark.parametrize("pn, text, gone", [
    ("Яковлев^Юрий", "Jakovlev Juri, kontroll", ["Jakovlev", "Juri"]),  # Estonian spelling of a Cyrillic name
    ("Jakovlev^Juri", "Яковлев Юрий", ["Яковлев"]),
    ("Ots^Mart", "Otsa uuring, Otsale saadetud", ["Otsa", "Otsale"]),  # case endings of a three-letter name
    ("Tamm^Mari", "read by Kim Minji, signed: Lepik", ["Kim", "Minji", "Lepik"]),  # staff after a cue
    ("Tamm^Mari", "DOB 80.01.01, sünd 1.1.80, a 93-year-old", ["80.01.01", "1.1.80", "93-year"]),
])
def test_more_ways_text_names_a_person(pn, text, gone):
    scrubbed, _ = scrub_text(text, person_name_variants(pn))
    assert [g for g in gone if g in scrubbed] == [], scrubbed
