"""pydicom's own test and charset files through the whole tree de-identifier: no crash, no PHI, reasons for refusals."""

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from crossmed.deid.dicom_file import IMPLEMENTATION_CLASS_UID
from crossmed.deid.profile import load_profile
from crossmed.deid.refusals import REASONS
from crossmed.deid.settings import DeidSettings
from crossmed.deid.tree import deidentify_tree

# The files installed with pydicom, read from its package folder: pydicom's own finder may try to download more.
PYDICOM_DATA = Path(pydicom.__file__).parent / "data"
TEST_FILES = sorted((PYDICOM_DATA / "test_files").glob("*.dcm"))
CHARSET_FILES = sorted((PYDICOM_DATA / "charset_files").glob("*.dcm"))
KEY = b"pydicom-corpus-key-0123456789abc"
NOT_PHI = {"ANONYMIZED", "ANONYMOUS", "Anonymized", "Anonymous", "TEST", "Test", "NONE", "None", "UNKNOWN", "XXXX", "Name"}
# Values that are public in another attribute (a vendor typed as institution) are not leaks when they appear there.
PUBLIC_KEYWORDS = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")


def _phi_values(ds) -> set[str]:
    """Return identifying values of a dataset worth searching for in output bytes (4+ characters)."""
    values = set()
    for keyword in ("PatientID", "PatientBirthDate", "InstitutionName", "AccessionNumber", "ReferringPhysicianName",
                    "OtherPatientIDs", "PatientAddress"):
        value = ds.get(keyword)
        if value:
            values.add(str(value))
    for group in str(ds.get("PatientName", "") or "").split("="):
        values.update(part.strip() for part in group.replace("^", " ").split(" "))
    return {v for v in values if len(v) >= 4 and v not in NOT_PHI and not v.isspace()}


def _charsets(ds) -> list[str]:
    """Return SpecificCharacterSet as a list, 'ISO 2022 IR 6' written as '' (both mean the default repertoire)."""
    value = ds.get("SpecificCharacterSet", "")
    values = [value] if isinstance(value, str) else list(value)
    return ["" if v == "ISO 2022 IR 6" else v for v in values]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Copies of pydicom's test files, plus its charset files given pixel data so they are not refused for lacking it."""
    root = tmp_path_factory.mktemp("corpus")
    for path in TEST_FILES:
        shutil.copy(path, root / Path(path).name)
    for path in CHARSET_FILES:
        ds = pydicom.dcmread(path)
        ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 4, 4, 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = bytes(range(16))
        ds["PixelData"].VR = "OB"
        ds.BurnedInAnnotation = "NO"
        ds.save_as(root / f"charset_{Path(path).name}", enforce_file_format=False)
    return root


def test_every_file_is_written_or_rejected_with_a_reason(corpus, tmp_path):
    out = tmp_path / "out"
    # pydicom's corpus is mostly secondary capture; here a steward has reviewed it for burned-in text.
    summary = deidentify_tree(corpus, out, DeidSettings(load_profile(["retain_long_modified_dates"]), KEY, allow_burned_in=True))
    assert summary.read == len(list(corpus.iterdir()))
    # Refused: many variants share one SOP Instance UID, some have no pixels, no Patient ID or pixels no codec decodes.
    assert summary.written + summary.rejected == summary.read and summary.written >= 34
    rejected = list(csv.DictReader(open(out / "rejected.csv", encoding="utf-8")))
    assert len(rejected) == summary.rejected and {r["reason"] for r in rejected} <= set(REASONS.values())
    assert {"duplicate_instance", "no_patient_id", "no_pixel_data"} <= {r["reason_code"] for r in rejected}
    written = sorted(out.rglob("*.dcm"))
    assert len(written) == summary.written
    for path in written:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.preamble == b"\0" * 128 and ds.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert not ds.file_meta.TransferSyntaxUID.is_compressed  # pixels decoded: no codec segment travels
        for element in ds.iterall():  # every text value decodes with the declared character set
            str(element.value)


def test_no_phi_of_the_corpus_in_any_output_byte(corpus, tmp_path):
    out = tmp_path / "out"
    deidentify_tree(corpus, out, DeidSettings(load_profile(), KEY, allow_burned_in=True))
    phi, public = set(), set()
    for path in corpus.iterdir():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue  # files pydicom cannot read are rejected; their values never reach the output
        phi |= _phi_values(ds)
        public |= {str(ds.get(k)) for k in PUBLIC_KEYWORDS if ds.get(k)}
    phi -= public
    assert len(phi) > 30
    leaks = {}
    for path in (p for p in out.rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path, stop_before_pixels=True) if path.suffix == ".dcm" else None
        text = "\n".join(str(e.value) for e in ds.iterall() if e.VR not in ("OB", "OW", "UN")) if ds else path.read_text(encoding="utf-8")
        found = [value for value in phi if re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text)]
        if found:
            leaks[path.name] = found
    assert leaks == {}


def test_charset_files_keep_their_character_set(corpus, tmp_path):
    out = tmp_path / "out"
    deidentify_tree(corpus, out, DeidSettings(load_profile(["clean_descriptors"]), KEY))
    by_source = {}
    for path in corpus.glob("charset_*.dcm"):
        ds = pydicom.dcmread(path)
        if "SOPInstanceUID" in ds and "StudyInstanceUID" in ds:  # the others are refused for lacking them
            by_source[ds.SOPInstanceUID] = ds
    from crossmed.deid.pseudonyms import Pseudonymizer
    pseudonyms = Pseudonymizer(KEY)
    seen = 0
    for path in out.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        original = next((o for uid, o in by_source.items() if pseudonyms.uid(uid) == ds.SOPInstanceUID), None)
        if original is None:
            continue
        seen += 1
        assert _charsets(ds) == _charsets(original)
        assert np.array_equal(ds.pixel_array, original.pixel_array)
    assert seen == len(by_source) >= 10
