"""PHI planted where a de-identifier does not usually look, and inputs meant to mislead or exhaust it.

Each test plants values in one place a hospital's file can carry them (preamble, file meta, codec segments,
bytes after the pixels, attributes Table E.1-1 does not list, SR content, file paths) or gives a bad
parameter or input, and checks every output byte or the refusal.
"""

import csv
import io
import logging
import os
import zlib
from datetime import date
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid

from crossmed.cli import main
from crossmed.deid.dicom_file import IMPLEMENTATION_CLASS_UID
from crossmed.deid.profile import load_profile
from crossmed.deid.settings import DeidSettings
from crossmed.deid.tree import deidentify_tree
from crossmed.errors import ConfigError, InputError
from crossmed.limits import InputLimits
from crossmed.national_ids import make_estonian_code, make_korean_rrn

KEY = b"adversarial-test-site-key-0123456789"
OPTIONS = ["retain_long_modified_dates", "retain_patient_characteristics", "clean_descriptors"]
RRN = make_korean_rrn(date(1980, 1, 1), True, 23456)
ISIKUKOOD = make_estonian_code(date(1984, 12, 1), False, 56)
PLANT = f"Hong^Gildong {RRN}"
PHI = ["Hong", "Gildong", "홍길동", RRN, RRN.replace("-", ""), "KW63034978", "hong.gildong@example.kr", "010-5555-0101",
       "Dr^Secret", "Secret", "Õunapuu", ISIKUKOOD, "20240313"]


def _settings(**kwargs) -> DeidSettings:
    return DeidSettings(load_profile(kwargs.pop("options", OPTIONS)), KEY, "KR-", **kwargs)


def base_dataset(pixels: np.ndarray | None = None) -> pydicom.FileDataset:
    """Return a DX data set of the patient Hong Gildong, born 1980-01-01, with 8-bit pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["adversarial", str(pixels is None)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["adversarial-study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["adversarial-series"])
    ds.Modality, ds.BurnedInAnnotation = "DX", "NO"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Hong^Gildong=홍^길동", "KW63034978", "19800101"
    ds.StudyDate, ds.ReferringPhysicianName = "20240313", "Dr^Secret"
    ds.Manufacturer, ds.ManufacturerModelName = "Hanbit Medical", "HDR-9000"
    pixels = np.arange(16 * 16, dtype=np.uint8).reshape(16, 16) if pixels is None else pixels
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = *pixels.shape, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelSpacing = [0.5, 0.5]
    ds.PixelData = pixels.tobytes()
    return ds


def write(ds: pydicom.FileDataset, path: Path, enforce: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=enforce)
    return path


def all_output_text(folder: Path) -> str:
    """Return every byte under `folder` decoded as UTF-8, EUC-KR, Latin-1 and UTF-16, and inflated zlib streams."""
    chunks = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        chunks += [data.decode(codec, errors="ignore") for codec in ("utf-8", "euc_kr", "latin-1", "utf-16-le")]
        chunks.append(str(path.relative_to(folder)))
    return "\n".join(chunks)


def leaked(folder: Path, values=PHI) -> list[str]:
    text = all_output_text(folder)
    return [value for value in values if value in text]


def test_preamble_and_file_meta_are_written_anew(tmp_path):
    ds = base_dataset()
    ds.preamble = PLANT.encode("utf-8").ljust(128, b"\0")
    ds.file_meta.ImplementationVersionName = "HONGPACS"
    ds.file_meta.SourceApplicationEntityTitle = "KW63034978"
    ds.file_meta.PrivateInformationCreatorUID = "1.2.3.4"
    ds.file_meta.PrivateInformation = f"{PLANT} hong.gildong@example.kr".encode("utf-8")
    write(ds, tmp_path / "src" / "a.dcm")
    summary = deidentify_tree(tmp_path / "src", tmp_path / "out", _settings())
    assert summary.written == 1
    out = next((tmp_path / "out").rglob("*.dcm"))
    assert out.read_bytes()[:128] == b"\0" * 128 and out.read_bytes()[128:132] == b"DICM"
    meta = pydicom.dcmread(out).file_meta
    assert set(meta.keys()) - {0x00020000} == {0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID and meta.ImplementationVersionName.startswith("CROSSMED")
    assert leaked(tmp_path / "out") == []
    assert "HONGPACS" not in all_output_text(tmp_path / "out")


def _jpeg_with_segments(pixels: np.ndarray) -> bytes:
    """Return a baseline JPEG whose COM and EXIF (APP1) segments hold PHI."""
    exif = Image.Exif()
    exif[0x010E] = PLANT  # ImageDescription
    exif[0x013B] = "Hong Gildong"  # Artist
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95, comment=PLANT.encode("utf-8"), exif=exif.tobytes())
    return buffer.getvalue()


def test_compressed_pixels_are_decoded_so_codec_segments_do_not_travel(tmp_path):
    pixels = (np.add.outer(np.arange(32), np.arange(32)) * 4).astype(np.uint8)
    ds = base_dataset(pixels)
    codestream = _jpeg_with_segments(pixels)
    assert PLANT.encode("utf-8") in codestream
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "MONOCHROME2"
    write(ds, tmp_path / "src" / "a.dcm")
    expected = pydicom.dcmread(tmp_path / "src" / "a.dcm").pixel_array
    summary = deidentify_tree(tmp_path / "src", tmp_path / "out", _settings())
    assert summary.written == 1
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(out.pixel_array, expected)
    assert leaked(tmp_path / "out") == []


def test_bytes_after_the_pixel_data_are_dropped(tmp_path):
    ds = base_dataset()
    ds.PixelData = ds.PixelData + PLANT.encode("utf-8") + b"\0"
    write(ds, tmp_path / "src" / "a.dcm")
    deidentify_tree(tmp_path / "src", tmp_path / "out", _settings())
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert len(out.PixelData) == 16 * 16
    assert leaked(tmp_path / "out") == []


def test_attributes_the_table_does_not_list_follow_the_allow_list(tmp_path):
    ds = base_dataset()
    ds.RetrieveURL = "https://pacs.example/wado?patientID=KW63034978"
    ds.DocumentTitle = PLANT
    ds.FrameLabel = "Hong Gildong"
    ds.add(DataElement(0x60000022, "LO", "Hong Gildong overlay"))  # Overlay Description (repeating group)
    ds.add(DataElement(0x60001500, "LO", "KW63034978"))  # Overlay Label
    ds.add(DataElement(0x00089990, "UN", PLANT.encode("utf-8")))  # a public tag no dictionary knows
    ds.ProcedureLastModifiedDate = "20240313"
    ds.StudyUpdateDateTime = "20240313101010"
    ds.KVP = "120"
    write(ds, tmp_path / "src" / "a.dcm")
    deidentify_tree(tmp_path / "src", tmp_path / "out", _settings())
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    for keyword in ("RetrieveURL", "DocumentTitle", "FrameLabel"):
        assert keyword not in out
    assert 0x60000022 not in out and 0x60001500 not in out and 0x00089990 not in out
    shift = (date(2024, 3, 13) - date.fromisoformat(f"{out.StudyDate[:4]}-{out.StudyDate[4:6]}-{out.StudyDate[6:]}")).days
    assert 1 <= shift <= 365 and out.ProcedureLastModifiedDate == out.StudyDate  # shifted like the listed dates
    assert out.StudyUpdateDateTime == out.StudyDate + "101010"
    assert (out.Manufacturer, out.ManufacturerModelName, float(out.KVP)) == ("Hanbit Medical", "HDR-9000", 120.0)
    assert leaked(tmp_path / "out") == []


def test_content_sequence_is_replaced_and_descriptors_lose_staff_names(tmp_path):
    ds = base_dataset()
    item = Dataset()
    item.ValueType, item.TextValue = "TEXT", "Reviewed with Kristjan Vaher, 12 Tamme tn, MRN KW63034978, hong.gildong@example.kr"
    person = Dataset()
    person.ValueType, person.PersonName = "PNAME", "Õunapuu^Mari"
    ds.ContentSequence = [item, person]
    ds.PerformingPhysicianName = "Vaher^Kristjan"
    ds.FrameComments = "frame read by Vaher; Dr^Secret agrees"
    ds.RequestedProcedureDescription = "Chest PA requested by Kristjan Vaher"
    write(ds, tmp_path / "src" / "a.dcm")
    deidentify_tree(tmp_path / "src", tmp_path / "out", _settings())
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    assert len(out.ContentSequence) == 1 and len(out.ContentSequence[0]) == 0  # D: a dummy, not a walk
    assert "Chest PA" in out.RequestedProcedureDescription  # clean_descriptors keeps the descriptor's clinical words
    assert leaked(tmp_path / "out", [*PHI, "Vaher", "Kristjan", "Tamme"]) == []


def test_source_paths_stay_out_of_everything_shared(tmp_path, caplog):
    patient_dir = tmp_path / "src" / "홍길동_800101-1234567" / "KW63034978" / "20240313"
    write(base_dataset(), patient_dir / "IM0001.dcm")
    (patient_dir / "IM0002.dcm").write_bytes(b"not a DICOM file")
    no_id = base_dataset()
    no_id.PatientID, no_id.SOPInstanceUID = "", generate_uid(entropy_srcs=["no id"])
    write(no_id, patient_dir / "IM0003.dcm")
    caplog.set_level(logging.INFO, logger="crossmed")
    summary = deidentify_tree(tmp_path / "src", tmp_path / "out", _settings(), site_records=tmp_path / "site")
    assert (summary.written, summary.rejected) == (1, 2)
    parts = ["홍길동", "800101-1234567", "KW63034978", "20240313", "IM0002", "IM0003"]
    assert leaked(tmp_path / "out", parts) == []
    assert [p for p in parts if p in caplog.text] == []
    site = list(csv.DictReader(open(tmp_path / "site" / "rejected_sources.csv", encoding="utf-8")))
    assert {Path(r["source_path"]).name: r["reason_code"] for r in site} == {"IM0002.dcm": "not_dicom",
                                                                              "IM0003.dcm": "no_patient_id"}
    shared = {r["reference"] for r in csv.DictReader(open(tmp_path / "out" / "rejected.csv", encoding="utf-8"))}
    assert shared == {r["reference"] for r in site}
    with pytest.raises(InputError, match="outside the output folder"):
        deidentify_tree(tmp_path / "src", tmp_path / "out2", _settings(), site_records=tmp_path / "out2" / "records")


def test_links_and_odd_names_are_refused_not_followed_or_skipped(tmp_path):
    src = tmp_path / "src"
    write(base_dataset(), src / "a" / "IM1.dcm")
    outside = write(base_dataset(), tmp_path / "elsewhere" / "KW63034978.dcm")
    (src / "a" / "link.dcm").symlink_to(outside)
    (src / "folder-link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    odd = os.fsdecode(b"\xc8\xab\xb1\xe6\xb5\xbf.dcm")  # EUC-KR bytes of 홍길동: not UTF-8
    (src / odd).write_bytes(b"junk")
    summary = deidentify_tree(src, tmp_path / "out", _settings(), site_records=tmp_path / "site")
    assert summary.written == 1
    assert dict(summary.reasons) == {"link_outside_source": 1, "skipped_folder": 1, "not_dicom": 1}
    records = (tmp_path / "site" / "rejected_sources.csv").read_text(encoding="utf-8")
    assert "\\xb1" in records and "folder-link" in records  # bytes that are not UTF-8 are shown as escapes


@pytest.mark.parametrize("days", [-2, 0])
def test_a_date_shift_bound_below_one_is_refused(tmp_path, days, capsys):
    write(base_dataset(), tmp_path / "src" / "a.dcm")
    with pytest.raises(ConfigError, match="at least 1"):
        _settings(max_date_shift_days=days)
    (tmp_path / "k.key").write_bytes(KEY)
    assert main(["deidentify", str(tmp_path / "src"), str(tmp_path / "out"), "--key-file", str(tmp_path / "k.key"),
                 "--max-date-shift-days", str(days)]) == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("prefix", ["../../..", "KR/", "a" * 40])
def test_unsafe_patient_prefixes_are_refused(prefix):
    with pytest.raises(ConfigError, match="patient prefix"):
        DeidSettings(load_profile(OPTIONS), KEY, prefix)


def test_site_names_that_would_leave_the_output_folder_are_refused(tiny_study, tmp_path):
    from crossmed.sources.synthetic import deidentify_study

    with pytest.raises(ConfigError, match="site code"):
        deidentify_study(tiny_study.paths.raw, tmp_path / "out", ["../../..", "KR"], tiny_study.deid)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_an_output_folder_of_another_key_is_refused_and_the_same_key_adds(tmp_path):
    write(base_dataset(), tmp_path / "day1" / "a.dcm")
    second = base_dataset()
    second.SOPInstanceUID = generate_uid(entropy_srcs=["day 2"])
    write(second, tmp_path / "day2" / "b.dcm")
    deidentify_tree(tmp_path / "day1", tmp_path / "out", _settings())
    before = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*"))
    other = DeidSettings(load_profile(OPTIONS), b"another-site-key-0123456789abcdef", "KR-")
    with pytest.raises(InputError, match="another site key"):
        deidentify_tree(tmp_path / "day2", tmp_path / "out", other)
    assert sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*")) == before
    with pytest.raises(InputError, match="another options"):
        deidentify_tree(tmp_path / "day2", tmp_path / "out", _settings(options=["retain_long_modified_dates"]))
    deidentify_tree(tmp_path / "day2", tmp_path / "out", _settings())
    audit = list(csv.DictReader(open(tmp_path / "out" / "audit.csv", encoding="utf-8")))
    assert len(audit) == 2 == len(list((tmp_path / "out").rglob("*.dcm")))  # the audit lists everything the folder holds
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="not empty"):
        deidentify_tree(tmp_path / "day2", tmp_path / "stranger", _settings())


def test_an_interrupted_run_leaves_the_output_as_it_was(tmp_path, monkeypatch):
    import crossmed.deid.tree as tree

    write(base_dataset(), tmp_path / "src" / "a.dcm")
    (tmp_path / ".out.crossmed-partial").mkdir()  # what a killed run leaves
    (tmp_path / ".out.crossmed-partial" / "half.dcm").write_bytes(b"half")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tree, "publish", interrupted)
    with pytest.raises(KeyboardInterrupt):
        deidentify_tree(tmp_path / "src", tmp_path / "out", _settings())
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.crossmed-partial").exists()


def _deflated_bomb(path: Path, inflated_mb: int) -> Path:
    """Write a Deflated Explicit VR Little Endian file whose data set inflates to about `inflated_mb` MiB."""
    ds = base_dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    from crossmed.data.dicom_bounds import data_set_offset

    offset = data_set_offset(data)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = zlib.decompress(data[offset:], -zlib.MAX_WBITS)
    # Data Set Trailing Padding (FFFC,FFFC) OB of zeros: compresses about a thousand to one.
    size = inflated_mb * 2**20
    trailer = b"\xfc\xff\xfc\xffOB\0\0" + size.to_bytes(4, "little")
    compressed = deflater.compress(body + trailer)
    chunk = bytes(2**20)
    for _ in range(inflated_mb):
        compressed += deflater.compress(chunk)
    compressed += deflater.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:offset] + compressed)
    return path


def test_a_deflate_bomb_and_an_oversized_file_are_refused_before_reading(tmp_path):
    bomb = _deflated_bomb(tmp_path / "src" / "bomb.dcm", 300)
    assert bomb.stat().st_size < 1_000_000
    sparse = tmp_path / "src" / "sparse.dcm"
    with open(sparse, "wb") as fh:
        fh.truncate(2 * 2**30)  # 2 GiB that occupy no disk
    summary = deidentify_tree(tmp_path / "src", tmp_path / "out", _settings(), site_records=tmp_path / "site")
    assert dict(summary.reasons) == {"too_large": 2}
    details = (tmp_path / "site" / "rejected_sources.csv").read_text(encoding="utf-8")
    assert "inflates beyond" in details and "2048 MiB exceeds" in details


def test_declared_pixel_size_is_bounded_before_decoding(tmp_path):
    ds = base_dataset()
    ds.Rows = ds.Columns = 60000
    ds.NumberOfFrames = 50
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    write(ds, tmp_path / "src" / "a.dcm")
    summary = deidentify_tree(tmp_path / "src", tmp_path / "out", _settings(limits=InputLimits()))
    assert dict(summary.reasons) == {"too_large": 1}


def _inflated(path: Path) -> bytes:
    """Return a file's bytes plus every compressed stream in it inflated (gzip members, PNG zlib chunks)."""
    import gzip
    import struct

    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        return data + gzip.decompress(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        at, streams = 8, [data]
        idat = b""
        while at + 8 <= len(data):
            length, kind = struct.unpack(">I4s", data[at:at + 8])
            body = data[at + 8:at + 8 + length]
            idat += body if kind == b"IDAT" else b""
            if kind in (b"zTXt", b"iCCP", b"iTXt"):
                streams.append(body)
            at += 12 + length
        streams.append(zlib.decompress(idat))
        return b"".join(streams)
    return data


def test_folder_images_are_rewritten_from_their_pixels(tmp_path, tiny_study):
    import nibabel as nib
    import pandas as pd

    from conftest import tiny_config
    from crossmed.data.image_files import read_image_file
    from crossmed.stages import deidentify as deidentify_stage
    from test_deid_images import HANGUL, _planted_jpeg, _planted_nifti, _planted_png

    folder, patient = tmp_path / "export", "홍길동_800101-1234567"
    (folder / patient).mkdir(parents=True)
    sources = [_planted_png(folder / patient / "a.png", "L"), _planted_jpeg(folder / patient / "b.jpg", "L"),
               _planted_nifti(folder / patient / "c.nii.gz", shape=(20, 24)),
               write(base_dataset(), folder / patient / "KW63034978" / "IM0001.dcm")]
    rows = [{"image": p.relative_to(folder).as_posix(), "patient_id": "KW63034978", "site": "A", "label": "positive",
             "sex": "M", "age": "44", "notes": f"{PLANT} hong.gildong@example.kr"} for p in sources]
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    (folder / "keys").mkdir()
    (folder / "keys" / "A.key").write_bytes(KEY)
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}", "study.external_sites=[]")
    deidentify_stage.run(cfg)
    out = Path(cfg.paths.deidentified)
    needles = [*PHI, HANGUL, "800101-1234567", "Gildong", "example.kr", patient]
    for path in (p for p in out.rglob("*") if p.is_file()):
        content = _inflated(path)
        text = "\n".join(content.decode(c, errors="ignore") for c in ("utf-8", "utf-16-le", "utf-16-be", "euc_kr"))
        assert [n for n in needles if n in text or n in str(path.relative_to(out))] == [], path.name
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    assert "notes" not in manifest.columns
    written = [out / name for name in manifest["image"]]
    assert [p.name.endswith(suffix) for p, suffix in zip(written, [".png", ".png", ".nii.gz", ".dcm"])] == [True] * 4
    for source, rewritten in zip(sources[:2], written[:2]):  # the pipeline reads the same pixels as before
        assert np.array_equal(read_image_file(source).pixels, read_image_file(rewritten).pixels)
    assert np.array_equal(np.asarray(nib.load(sources[2]).dataobj), np.asarray(nib.load(written[2]).dataobj))


def test_manifest_site_names_are_checked_before_anything_is_written(tmp_path, tiny_study):
    import pandas as pd

    from crossmed.stages import deidentify as deidentify_stage
    from conftest import tiny_config

    folder = tmp_path / "export"
    write(base_dataset(), folder / "IM1.dcm")
    pd.DataFrame([{"image": "IM1.dcm", "patient_id": "P1", "site": "../../..", "label": "positive", "sex": "M",
                   "age": "40"}]).to_csv(folder / "manifest.csv", index=False)
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}", "study.external_sites=[]")
    with pytest.raises(ConfigError, match="site code '../../..'"):
        deidentify_stage.run(cfg)
    assert not Path(cfg.paths.deidentified).exists()


def test_clinical_table_refuses_bad_dates_and_empty_ids_with_a_message(tmp_path, capsys):
    (tmp_path / "k.key").write_bytes(KEY)
    table = tmp_path / "clinical.csv"
    base = ["--key-file", str(tmp_path / "k.key"), "--date-column", "study_date", "--keep-column", "age"]
    table.write_text("patient_id,study_date,age\nKW1,2024-03-13,40\nKW2,13/13/2024,50\n", encoding="utf-8")
    assert main(["deidentify-table", str(table), str(tmp_path / "out.csv"), *base]) == 2
    assert "row 3, column 'study_date': not a date" in capsys.readouterr().err
    table.write_text("patient_id,study_date,age\nKW1,2024-03-13,40\n,2024-03-14,50\n", encoding="utf-8")
    assert main(["deidentify-table", str(table), str(tmp_path / "out.csv"), *base]) == 2
    assert "empty 'patient_id' in row(s) [3]" in capsys.readouterr().err
    assert not (tmp_path / "out.csv").exists()


def test_an_unreadable_key_file_is_a_message(tmp_path, monkeypatch, capsys):
    key = tmp_path / "k.key"
    key.write_bytes(KEY)
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                        if self == key else real(self))
    write(base_dataset(), tmp_path / "src" / "a.dcm")
    assert main(["deidentify", str(tmp_path / "src"), str(tmp_path / "out"), "--key-file", str(key)]) == 2
    assert "key file cannot be read (Permission denied)" in capsys.readouterr().err


def test_csv_cells_a_spreadsheet_would_run_are_escaped(tmp_path):
    write(base_dataset(), tmp_path / "src" / "a.dcm")
    (tmp_path / "src" / '=HYPERLINK("evil.example","x").dcm').write_bytes(b"junk")
    deidentify_tree(tmp_path / "src", tmp_path / "out", _settings(), site_records=tmp_path / "site")
    rows = list(csv.DictReader(open(tmp_path / "site" / "rejected_sources.csv", encoding="utf-8")))
    assert rows[0]["source_path"].startswith("'=HYPERLINK(")
    (tmp_path / "k.key").write_bytes(KEY)
    (tmp_path / "clinical.csv").write_text("patient_id,note,score\nKW1,=1+2,-3.5\nKW2,@SUM(A1),+7\n", encoding="utf-8")
    assert main(["deidentify-table", str(tmp_path / "clinical.csv"), str(tmp_path / "out.csv"), "--key-file",
                 str(tmp_path / "k.key"), "--keep-column", "note", "--keep-column", "score"]) == 0
    kept = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8")))
    assert [(r["note"], r["score"]) for r in kept] == [("'=1+2", "-3.5"), ("'@SUM(A1)", "+7")]


def test_a_study_folder_named_after_a_patient_is_refused(tmp_path, tiny_study):
    from conftest import tiny_config
    from crossmed.stages import deidentify as deidentify_stage

    folder = tmp_path / f"export_{RRN}"
    write(base_dataset(), folder / "IM1.dcm")
    cfg = tiny_config(tmp_path, "data=folder", f"data.path={folder}", "study.external_sites=[]")
    with pytest.raises(ConfigError, match="data.path.*korean_rrn"):
        deidentify_stage.run(cfg)


def test_a_picture_over_the_pixel_limit_is_a_message_not_a_traceback(tmp_path):
    from crossmed.data.image_files import read_image_file
    from test_deid_images import _png_with_ihdr

    bomb = _png_with_ihdr(tmp_path / "bomb.png", 30000, 30000)
    with pytest.raises(InputError, match=r"bomb.png: (image of 30000 x 30000 pixels exceeds|unreadable image \(Decompr)"):
        read_image_file(bomb)  # Pillow's own bomb check or crossmed's limit, whichever sees it first


def test_leftovers_of_a_killed_stage_are_removed_before_it_writes_again(tmp_path):
    from crossmed.files import atomic_directory

    target = tmp_path / "deidentified"
    (tmp_path / ".deidentified.abc123.tmp").mkdir()  # what a kill between mkdtemp and rename leaves
    (tmp_path / ".deidentified.abc123.tmp" / "half.dcm").write_bytes(b"half")
    (tmp_path / ".deidentified.old").mkdir()
    with atomic_directory(target) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deidentified"]
