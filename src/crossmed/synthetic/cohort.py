"""Write the built-in two-site cohort: real DX DICOM files with realistic PHI, labels and demo keys."""

import csv
import io
import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from crossmed.errors import ConfigError
from crossmed.site_codes import check_site_code
from crossmed.files import atomic_directory, atomic_path, write_bytes_atomic
from crossmed.synthetic.identities import Patient, clinical_comment, make_patient
from crossmed.synthetic.phantom import RENDER_SPACING_MM, Acquisition, Opacity, acquire, patient_anatomy, random_opacity, render

log = logging.getLogger("crossmed.synthesize")

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
PRIVATE_CREATOR = "CROSSMED SYNTH PHI"
SUPPORTED_LANGUAGES = {"ko", "et"}
SUPPORTED_CHARACTER_SETS = {"ISO 2022 IR 149", "ISO_IR 192", "ISO_IR 100"}
LABEL_COLUMNS = ["patient_id", "patient_name", "sop_instance_uid", "study_date", "sex", "age", "finding",
                 "finding_row", "finding_col", "finding_radius"]  # where the opacity is: image pixels (row, column, radius)


@dataclass(frozen=True)
class SiteSpec:
    """One synthetic site: who it is, how many patients, and how its device acquires images."""

    code: str
    institution: str
    address: str
    language: str
    character_set: str  # 'ISO 2022 IR 149', 'ISO_IR 192', 'ISO_IR 100'
    n_patients: int
    acquisition: Acquisition
    rescale_slope: float
    rescale_intercept: float
    stored_scale: float
    manufacturer: str
    model: str

    @classmethod
    def from_config(cls, code: str, cfg) -> "SiteSpec":
        """Return the site described by one entry of `data.synthetic.sites`; raise ConfigError naming a bad key."""
        key = f"data.synthetic.sites.{code}"
        check_site_code(code, "data.synthetic.sites")
        if cfg.language not in SUPPORTED_LANGUAGES:
            raise ConfigError(f"{key}.language", f"'{cfg.language}' has no fictitious identities (known: {sorted(SUPPORTED_LANGUAGES)})")
        if cfg.character_set not in SUPPORTED_CHARACTER_SETS:
            raise ConfigError(f"{key}.character_set", f"'{cfg.character_set}' not supported (known: {sorted(SUPPORTED_CHARACTER_SETS)})")
        if int(cfg.n_patients) < 1 or int(cfg.rows) < 16:
            raise ConfigError(key, "n_patients must be >= 1 and rows >= 16")
        acq = Acquisition(int(cfg.rows), float(cfg.pixel_spacing_mm), float(cfg.contrast), float(cfg.noise_sd), float(cfg.blur_px))
        return cls(code, cfg.institution, cfg.address, cfg.language, cfg.character_set, int(cfg.n_patients), acq,
                   float(cfg.rescale_slope), float(cfg.rescale_intercept), float(cfg.stored_scale), cfg.manufacturer, cfg.model)


@dataclass(frozen=True)
class CohortSpec:
    """What the whole synthetic cohort looks like."""

    seed: int
    fov_mm: float
    prevalence: float
    images_per_patient: tuple[int, int]
    opacity_radius_mm: tuple[float, float]
    opacity_amplitude: tuple[float, float]
    sites: tuple[SiteSpec, ...]

    @classmethod
    def from_config(cls, cfg) -> "CohortSpec":
        """Return the cohort described by `data.synthetic`."""
        sites = tuple(SiteSpec.from_config(code, site) for code, site in cfg.sites.items())
        return cls(int(cfg.seed), float(cfg.fov_mm), float(cfg.prevalence), tuple(cfg.images_per_patient),
                   tuple(cfg.opacity_radius_mm), tuple(cfg.opacity_amplitude), sites)


def _uid(*parts) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _character_set(site: SiteSpec, patient: Patient, rng: np.random.Generator) -> list[str] | str:
    """Return the SpecificCharacterSet a site's PACS would use for this patient's files."""
    if site.character_set == "ISO 2022 IR 149":
        # Korean PACS mix ISO 2022 IR 149 (with G0 ASCII) and UTF-8; keep both in the cohort.
        return ["", "ISO 2022 IR 149"] if rng.random() < 0.7 else "ISO_IR 192"
    if site.character_set == "ISO_IR 100":
        try:
            (patient.name + site.institution + site.address).encode("latin-1")
            return "ISO_IR 100"
        except UnicodeEncodeError:
            return "ISO_IR 192"  # e.g. 'Šmidt' is not in Latin-1
    return site.character_set


def _staff_name(rng: np.random.Generator, language: str) -> str:
    if language == "ko":
        return ["Park^Jisoo=박^지수", "Han^Sungmin=한^성민", "Oh^Yuna=오^유나"][int(rng.integers(3))]
    return ["Kuusk^Margus", "Lepik^Tiina", "Vaher^Kristjan"][int(rng.integers(3))]


def build_dataset(site: SiteSpec, patient: Patient, study: dict, image: dict, pixels: np.ndarray, charset) -> pydicom.FileDataset:
    """Return one DX image as a DICOM dataset carrying the PHI a real hospital file would."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = image["sop_uid"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = _uid("crossmed-synth-implementation")
    ds = pydicom.FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = image["sop_uid"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = study["date"].strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study["time"]
    ds.AcquisitionDateTime = ds.StudyDate + study["time"]
    ds.AccessionNumber = study["accession"]
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = site.manufacturer
    ds.ManufacturerModelName = site.model
    ds.InstitutionName = site.institution
    ds.InstitutionAddress = site.address
    ds.ReferringPhysicianName = study["referring"]
    ds.PerformingPhysicianName = study["performing"]
    ds.OperatorsName = study["operator"]
    ds.StationName = f"{site.code}-DR-0{study['station']}"
    ds.StudyDescription = "Chest PA" if site.language != "ko" else "흉부 PA"
    ds.SeriesDescription = "PA"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = f"{site.code} HIS"
    ds.PatientBirthDate = patient.birth_date.strftime("%Y%m%d")
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{study['age']:03d}Y"
    ds.PatientTelephoneNumbers = patient.phone
    other = Dataset()
    other.PatientID = patient.national_id
    other.IssuerOfPatientID = "KR MOIS RRN" if site.language == "ko" else "EE isikukood"
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = [other]
    request = Dataset()
    request.RequestedProcedureID = f"RP{study['accession']}"
    request.ScheduledProcedureStepID = f"S{study['accession']}"
    request.RequestedProcedureDescription = f"Chest PA for {patient.family_name}"
    ds.RequestAttributesSequence = [request]
    ds.DeviceSerialNumber = f"SN{site.code}{study['station']:04d}"
    ds.SoftwareVersions = "synth-1.0"
    ds.StudyInstanceUID = study["uid"]
    ds.SeriesInstanceUID = study["series_uid"]
    ds.FrameOfReferenceUID = study["frame_uid"]
    ds.StudyID = study["accession"][-6:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = image["number"]
    ds.ImageComments = image["comment"]
    if image["number"] > 1:
        ref = Dataset()
        ref.ReferencedSOPClassUID = DX_FOR_PRESENTATION
        ref.ReferencedSOPInstanceUID = study["first_sop_uid"]
        ds.ReferencedImageSequence = [ref]
    ds.BurnedInAnnotation = "NO"
    ds.PatientOrientation = ["L", "F"]
    ds.ImagerPixelSpacing = [site.acquisition.pixel_spacing_mm] * 2
    ds.PixelSpacing = [site.acquisition.pixel_spacing_mm] * 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope = f"{site.rescale_slope:g}"
    ds.RescaleIntercept = f"{site.rescale_intercept:g}"
    ds.RescaleType = "US"
    ds.PixelData = pixels.astype("<u2").tobytes()
    block = ds.private_block(0x0029, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", patient.phone)
    block.add_new(0x11, "LO", patient.national_id)
    return ds


def _to_stored(signal: np.ndarray, site: SiteSpec) -> np.ndarray:
    """Return 12-bit stored values whose modality LUT gives the site's intensity scale."""
    modality = signal * site.stored_scale + 1000.0
    stored = (modality - site.rescale_intercept) / site.rescale_slope
    return np.clip(np.round(stored), 0, 4095).astype(np.uint16)


def write_site(spec: CohortSpec, site: SiteSpec, site_index: int, dicom_dir: Path) -> list[dict]:
    """Write one site's DICOM files under `dicom_dir` and return its label rows."""
    rng = np.random.default_rng([spec.seed, site_index])
    rows = []
    for index in range(site.n_patients):
        patient = make_patient(rng, site.code, site.language, index)
        charset = _character_set(site, patient, rng)
        anatomy_seed = int(rng.integers(2**31))
        anatomy = patient_anatomy(anatomy_seed, spec.fov_mm)
        first_date = date(2023, 1, 2) + timedelta(days=int(rng.integers(0, 700)))
        n_images = int(rng.integers(spec.images_per_patient[0], spec.images_per_patient[1] + 1))
        study = None
        for number in range(1, n_images + 1):
            # Follow-up images sometimes share a study (a second view) and sometimes come months later.
            if study is None or rng.random() < 0.5:
                study_date = first_date if study is None else study["date"] + timedelta(days=int(rng.integers(30, 200)))
                accession = f"{site.code}{study_date:%y%m%d}{int(rng.integers(10**5, 10**6))}"
                study = {
                    "date": study_date, "time": f"{int(rng.integers(7, 19)):02d}{int(rng.integers(60)):02d}{int(rng.integers(60)):02d}",
                    "accession": accession, "uid": _uid(site.code, patient.patient_id, accession, "study"),
                    "series_uid": _uid(site.code, accession, "series"), "frame_uid": _uid(site.code, accession, "frame"),
                    "referring": _staff_name(rng, site.language), "performing": _staff_name(rng, site.language),
                    "operator": _staff_name(rng, site.language), "station": int(rng.integers(1, 4)),
                    "age": (study_date - patient.birth_date).days // 365, "first_sop_uid": None, "images": 0,
                }
            finding = bool(rng.random() < spec.prevalence)
            opacity = random_opacity(rng, spec.fov_mm, spec.opacity_radius_mm, spec.opacity_amplitude) if finding else None
            signal = acquire(render(anatomy, opacity, spec.fov_mm, rng), site.acquisition, rng)
            study["images"] += 1
            sop_uid = _uid(site.code, study["accession"], number, "image")
            study["first_sop_uid"] = study["first_sop_uid"] or sop_uid
            image = {"sop_uid": sop_uid, "number": study["images"], "comment": clinical_comment(rng, patient, site.language)}
            ds = build_dataset(site, patient, study, image, _to_stored(signal, site), charset)
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            write_bytes_atomic(dicom_dir / patient.patient_id / f"{study['date']:%Y%m%d}" / f"IM{number:04d}.dcm", buffer.getvalue())
            rows.append({"patient_id": patient.patient_id, "patient_name": patient.name.split("=")[-1], "sop_instance_uid": sop_uid,
                         "study_date": f"{study['date']:%Y-%m-%d}", "sex": patient.sex, "age": study["age"], "finding": int(finding),
                         **finding_in_pixels(opacity, spec.fov_mm, site.acquisition.rows)})
    return rows


def finding_in_pixels(opacity: Opacity | None, fov_mm: float, rows: int) -> dict:
    """Return the opacity's centre (row, column) and radius in the acquired image's pixels; empty without one.

    The render grid samples the FOV every RENDER_SPACING_MM from 0; `acquire` resamples it to `rows` pixels with
    ndimage.zoom, which maps the first and last samples onto the first and last pixels.
    """
    if opacity is None:
        return {"finding_row": "", "finding_col": "", "finding_radius": ""}
    render = int(round(fov_mm / RENDER_SPACING_MM))
    scale = (rows - 1) / (render - 1) / RENDER_SPACING_MM  # pixels per mm
    return {"finding_row": round(opacity.centre_mm[0] * scale, 2), "finding_col": round(opacity.centre_mm[1] * scale, 2),
            "finding_radius": round(opacity.radius_mm * scale, 2)}


def _write_labels(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def demo_key(seed: int, site: str) -> str:
    """Return the demo de-identification key of a site (a real site generates its own and keeps it)."""
    return np.random.default_rng([seed, 7919, sum(map(ord, site))]).bytes(32).hex()


def write_demo_keys(spec: CohortSpec, key_dir: str | Path) -> None:
    """Write each site's demo key into `key_dir` (site-only, outside every DVC output); an existing key is never replaced."""
    key_dir = Path(key_dir)
    key_dir.mkdir(parents=True, exist_ok=True)
    for site in spec.sites:
        path = key_dir / f"{site.code}.key"
        if path.exists():
            if path.read_text().strip() != demo_key(spec.seed, site.code):
                log.warning("%s holds another key than the demo key; it is kept, so pseudonyms differ from the demo's", path)
            continue
        with atomic_path(path) as tmp:
            tmp.write_text(demo_key(spec.seed, site.code) + "\n")
        path.chmod(0o600)
    log.info("demo site keys in %s (site-only: never committed, never in DVC)", key_dir)


def write_cohort(spec: CohortSpec, out_dir: str | Path, key_dir: str | Path | None = None) -> dict:
    """Write every site's DICOM tree and labels.csv under `out_dir` (and demo keys into `key_dir`); return a summary."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    summary = {}
    with atomic_directory(out_dir) as tmp:
        for site_index, site in enumerate(spec.sites):
            rows = write_site(spec, site, site_index, tmp / site.code / "dicom")
            _write_labels(tmp / site.code / "labels.csv", rows)
            positives = sum(r["finding"] for r in rows)
            summary[site.code] = {"patients": site.n_patients, "images": len(rows), "positives": positives}
            log.info("site %s: wrote %d images of %d patients (%d with finding) to %s",
                     site.code, len(rows), site.n_patients, positives, out_dir / site.code / "dicom")
    if key_dir is not None:
        write_demo_keys(spec, key_dir)
    log.info("synthetic cohort written to %s in %.1f s", out_dir, time.perf_counter() - started)
    return summary


def write_not_synthesized(out_dir: str | Path, source: str) -> None:
    """Write `out_dir` with only a note: the study reads data.source=`source`, so nothing is synthesized."""
    with atomic_directory(out_dir) as tmp:
        (tmp / "README.txt").write_text(f"data.source={source}: the study reads its own data; nothing synthesized.\n")
    log.info("data.source=%s: nothing to synthesize; wrote a note to %s", source, out_dir)
