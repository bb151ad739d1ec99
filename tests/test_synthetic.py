"""The built-in cohort: real DICOM, site character sets, PHI in headers and text, deterministic from the seed."""

from pathlib import Path

import pandas as pd
import pydicom

from crossmed.national_ids import find_estonian_codes, find_korean_rrns
from crossmed.synthetic.cohort import CohortSpec, write_cohort
from conftest import tiny_config


def _files(root, site):
    return sorted((Path(root) / site / "dicom").rglob("*.dcm"))


def test_sites_use_their_character_sets(tiny_study):
    raw = tiny_study.paths.raw
    kr = [pydicom.dcmread(f) for f in _files(raw, "KR")]
    charsets = {tuple(ds.SpecificCharacterSet) if ds["SpecificCharacterSet"].VM > 1 else (ds.SpecificCharacterSet,) for ds in kr}
    assert ("", "ISO 2022 IR 149") in charsets
    assert charsets <= {("", "ISO 2022 IR 149"), ("ISO_IR 192",)}
    hangul = [ds for ds in kr if any("\uac00" <= ch <= "\ud7a3" for ch in str(ds.PatientName))]
    assert len(hangul) == len(kr), "every Korean patient name has a Hangul group"
    assert kr[0].InstitutionName == "강원대학교병원"
    ee = [pydicom.dcmread(f) for f in _files(raw, "EE")]
    assert {str(ds.SpecificCharacterSet) for ds in ee} <= {"ISO_IR 100", "ISO_IR 192"}
    assert ee[0].InstitutionName == "Tartu Ülikooli Kliinikum"


def test_headers_carry_phi_to_remove(tiny_study):
    raw = tiny_study.paths.raw
    kr = [pydicom.dcmread(f) for f in _files(raw, "KR")]
    ee = [pydicom.dcmread(f) for f in _files(raw, "EE")]
    assert all(find_korean_rrns(ds.OtherPatientIDsSequence[0].PatientID) for ds in kr)
    assert all(find_estonian_codes(ds.OtherPatientIDsSequence[0].PatientID) for ds in ee)
    assert all(ds.PatientBirthDate and ds.AccessionNumber and ds.PatientID for ds in kr + ee)
    assert all(any(tag.is_private for tag in ds.keys()) for ds in kr + ee)


def test_labels_match_files(tiny_study):
    for site in ("KR", "EE"):
        labels = pd.read_csv(Path(tiny_study.paths.raw) / site / "labels.csv", dtype=str)
        uids = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in _files(tiny_study.paths.raw, site)}
        assert set(labels["sop_instance_uid"]) == uids
        assert set(labels["finding"]) == {"0", "1"}


def test_sites_differ_in_acquisition(tiny_study):
    kr = pydicom.dcmread(_files(tiny_study.paths.raw, "KR")[0])
    ee = pydicom.dcmread(_files(tiny_study.paths.raw, "EE")[0])
    assert (kr.Rows, float(kr.PixelSpacing[0])) != (ee.Rows, float(ee.PixelSpacing[0]))
    assert (kr.RescaleSlope, kr.RescaleIntercept) != (ee.RescaleSlope, ee.RescaleIntercept)


def test_same_seed_gives_identical_bytes(tmp_path):
    cfg = tiny_config(tmp_path, "data.synthetic.sites.KR.n_patients=3", "data.synthetic.sites.EE.n_patients=2")
    spec = CohortSpec.from_config(cfg.data.synthetic)
    write_cohort(spec, tmp_path / "a")
    write_cohort(spec, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)


def test_unknown_site_language_names_the_key(tmp_path):
    import pytest
    from crossmed.errors import ConfigError

    cfg = tiny_config(tmp_path, "data.synthetic.sites.EE.language=fr")
    with pytest.raises(ConfigError, match=r"data\.synthetic\.sites\.EE\.language"):
        CohortSpec.from_config(cfg.data.synthetic)
