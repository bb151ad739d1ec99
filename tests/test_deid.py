"""De-identification: no PHI survives, pseudonyms are keyed and consistent, bad files are rejected."""

import csv
import re
from pathlib import Path

import pydicom
import pytest

from crossmed.deid.dicom_dataset import DatasetDeidentifier
from crossmed.deid.keys import load_key
from crossmed.deid.profile import load_profile
from crossmed.deid.pseudonyms import Pseudonymizer
from crossmed.deid.settings import DeidSettings
from crossmed.deid.tree import deidentify_tree
from crossmed.errors import ConfigError, InputError

KEY = b"0123456789abcdef0123456789abcdef"
OPTIONS = ["retain_long_modified_dates", "retain_patient_characteristics", "clean_descriptors"]


def _all_text(ds):
    """Yield every string value in a dataset, at every depth."""
    for element in ds.iterall():
        if element.VR in ("SQ", "OB", "OW", "UN"):
            continue
        values = element.value if isinstance(element.value, (list, pydicom.multival.MultiValue)) else [element.value]
        for value in values:
            yield str(value)


def _phi_of(raw_files):
    """Return identifying strings a raw file holds (names, IDs, national IDs, phones, dates, places)."""
    phi = set()
    for path in raw_files:
        ds = pydicom.dcmread(path)
        for group in str(ds.PatientName).split("="):
            phi.update(part for part in group.split("^") if len(part) > 1)
        phi.update([ds.PatientID, ds.OtherPatientIDsSequence[0].PatientID, ds.PatientTelephoneNumbers, ds.PatientBirthDate,
                    ds.AccessionNumber, ds.InstitutionName, ds.InstitutionAddress, ds.StationName, ds.DeviceSerialNumber,
                    ds.StudyDate, ds.SOPInstanceUID, ds.StudyInstanceUID])
        phi.update(part for part in str(ds.ReferringPhysicianName).replace("=", "^").split("^") if len(part) > 1)
    return phi


@pytest.fixture(scope="module")
def deidentified(tiny_study, tmp_path_factory):
    out = tmp_path_factory.mktemp("deid") / "KR"
    summary = deidentify_tree(Path(tiny_study.paths.raw) / "KR" / "dicom", out, DeidSettings(load_profile(OPTIONS), KEY, "KR-"))
    return Path(tiny_study.paths.raw) / "KR" / "dicom", out, summary


def test_no_phi_survives(deidentified):
    src, out, summary = deidentified
    assert summary.written == summary.read > 0 and summary.rejected == 0
    phi = _phi_of(sorted(src.rglob("*.dcm")))
    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == summary.written == len(list(src.rglob("*.dcm"))), "every written file is checked"
    for path in outputs:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
        assert not any(tag.is_private for tag in ds.keys())
        text = "\n".join(_all_text(ds)) + "\n".join(_all_text(ds.file_meta)) + str(path.relative_to(out))
        leaked = _found(phi, text)
        assert leaked == [], f"{path.name} still holds {leaked}"
    assert _found(phi, (out / "audit.csv").read_text(encoding="utf-8")) == []


def _found(phi, text):
    """Return the PHI values found in text as whole words ('Han' in 'Hanbit Medical' is not a leak)."""
    return [value for value in phi if value and re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text)]


def test_references_and_studies_stay_consistent(deidentified):
    _, out, _ = deidentified
    datasets = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
    sop_uids = {ds.SOPInstanceUID for ds in datasets}
    referencing = [ds for ds in datasets if "ReferencedImageSequence" in ds]
    assert referencing, "the tiny cohort has second views that reference the first"
    for ds in referencing:
        assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID in sop_uids
    for ds in datasets:
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert all(len(uid) <= 64 for uid in (ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID))
        assert ds.PatientID.startswith("KR-") and ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_same_key_is_byte_identical_and_other_key_unlinkable(deidentified, tmp_path):
    src, out, _ = deidentified
    deidentify_tree(src, tmp_path / "again", DeidSettings(load_profile(OPTIONS), KEY, "KR-"))
    first = sorted(p.relative_to(out) for p in out.rglob("*.dcm"))
    assert first == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*.dcm"))
    assert all((out / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in first)
    deidentify_tree(src, tmp_path / "other", DeidSettings(load_profile(OPTIONS), b"another-site-key-0123456789", "KR-"))
    ids_a = {p.parts[0] for p in first}
    ids_b = {p.relative_to(tmp_path / "other").parts[0] for p in (tmp_path / "other").rglob("*.dcm")}
    assert ids_a.isdisjoint(ids_b)


def test_dates_shift_by_one_offset_per_patient(deidentified):
    src, out, _ = deidentified
    pseudonyms = Pseudonymizer(KEY, "KR-")
    raw = {pseudonyms.uid(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(p) for p in src.rglob("*.dcm"))}
    outputs = sorted(out.rglob("*.dcm"))
    assert len(outputs) == len(raw) > 0, "every source file has its de-identified twin to compare"
    for path in outputs:
        ds = pydicom.dcmread(path)
        original = raw[ds.SOPInstanceUID]
        offset = pseudonyms.date_offset_days(original.PatientID)
        from datetime import datetime, timedelta
        expected = (datetime.strptime(original.StudyDate, "%Y%m%d") + timedelta(days=offset)).strftime("%Y%m%d")
        assert ds.StudyDate == expected and ds.PatientBirthDate == ""


def test_bad_files_are_rejected_and_others_written(deidentified, tmp_path, copy_of):
    src, _, _ = deidentified
    bad_src = copy_of(src, "src")
    good = sorted(bad_src.rglob("*.dcm"))
    (bad_src / "notes.txt").write_text("not an image")
    good[0].write_bytes(good[0].read_bytes()[:-500])  # truncated pixel data
    no_pixels = pydicom.dcmread(good[1])
    del no_pixels.PixelData
    no_pixels.save_as(good[1])
    burned = pydicom.dcmread(good[2])
    burned.BurnedInAnnotation = "YES"
    burned.save_as(good[2])
    out = tmp_path / "out"
    summary = deidentify_tree(bad_src, out, DeidSettings(load_profile(OPTIONS), KEY), site_records=tmp_path / "site")
    shared = list(csv.DictReader(open(out / "rejected.csv", encoding="utf-8")))
    site_only = {row["reference"]: row for row in csv.DictReader(open(tmp_path / "site" / "rejected_sources.csv", encoding="utf-8"))}
    codes = {site_only[row["reference"]]["source_path"]: row["reason_code"] for row in shared}
    assert summary.rejected == 4 and summary.written == len(good) - 3
    assert codes == {"notes.txt": "not_dicom", good[0].relative_to(bad_src).as_posix(): "damaged_pixel_data",
                     good[1].relative_to(bad_src).as_posix(): "no_pixel_data",
                     good[2].relative_to(bad_src).as_posix(): "burned_in_text"}
    assert "truncated" in site_only[shared[[r["reason_code"] for r in shared].index("damaged_pixel_data")]["reference"]]["detail"]
    # What is shared names no source file: the raw tree's folders are real patient IDs and study dates.
    shared_text = (out / "rejected.csv").read_text(encoding="utf-8") + (out / "audit.csv").read_text(encoding="utf-8")
    assert not any(part in shared_text for path in good for part in path.relative_to(bad_src).parts)
    assert "notes.txt" not in shared_text
    assert len(list(out.rglob("*.dcm"))) == summary.written


def test_destination_inside_source_is_refused(deidentified):
    src, _, _ = deidentified
    with pytest.raises(InputError, match="inside the source"):
        deidentify_tree(src, src / "out", DeidSettings(load_profile(), KEY))


@pytest.mark.parametrize("path", sorted((Path(pydicom.__file__).parent / "data" / "charset_files").glob("*.dcm")), ids=lambda p: p.name)
def test_pydicom_charset_files_come_out_valid(path, tmp_path):
    ds = pydicom.dcmread(path)
    name = str(ds.get("PatientName", ""))
    DatasetDeidentifier(load_profile(OPTIONS), Pseudonymizer(KEY)).apply(ds)
    ds.save_as(tmp_path / "out.dcm", enforce_file_format=False)
    back = pydicom.dcmread(tmp_path / "out.dcm")
    assert back.SpecificCharacterSet == ds.SpecificCharacterSet
    assert str(back.get("PatientName", "")) != name or not name
    assert back.PatientIdentityRemoved == "YES"
    for value in _all_text(back):
        value.encode("utf-8")  # every value decodes with the declared character set


def test_profile_options_change_actions():
    basic, kept = load_profile(), load_profile(["retain_patient_characteristics"])
    age, sex, birth = 0x00101010, 0x00100040, 0x00100030
    assert (basic.action_for(age), kept.action_for(age)) == ("X", "K")
    assert (basic.action_for(sex), kept.action_for(sex)) == ("Z", "K")
    assert kept.action_for(birth) == "Z"
    assert basic.action_for(0x60024000) == "X"  # Overlay Comments, repeating group 60xx
    assert len(basic.exact) > 550
    with pytest.raises(ConfigError, match="deid.options"):
        load_profile(["retain_everything"])


def test_key_file_checks(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="key file not found"):
        load_key(tmp_path / "missing.key")
    (tmp_path / "short.key").write_text("abc")
    with pytest.raises(InputError, match="shorter than"):
        load_key(tmp_path / "short.key")
    monkeypatch.setenv("CROSSMED_DEID_KEY", KEY.decode())
    assert load_key(None) == KEY


def test_workers_give_the_same_bytes(deidentified, tmp_path):
    src, out, _ = deidentified
    deidentify_tree(src, tmp_path / "parallel", DeidSettings(load_profile(OPTIONS), KEY, "KR-", workers=2))
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "parallel") for p in (tmp_path / "parallel").rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (tmp_path / "parallel" / f).read_bytes() for f in files)
