"""Leak scan: de-identify the synthetic two-site cohort and pydicom's test files with the `crossmed` command,
then search every output byte (DICOM, CSV, the command's log) for every PHI value of the inputs; prints JSON.

Run: `.venv/bin/python benchmarks/deid_leak_scan.py`. Goal: zero hits.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pydicom
from omegaconf import OmegaConf

from crossmed.params_file import compose_params
from crossmed.synthetic.cohort import CohortSpec, write_cohort

PHI_KEYWORDS = ["PatientID", "PatientBirthDate", "AccessionNumber", "InstitutionName", "InstitutionAddress",
                "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "StationName", "DeviceSerialNumber",
                "PatientTelephoneNumbers", "StudyID", "StudyDate", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
CODECS = ["utf-8", "euc_kr", "latin-1", "iso2022_jp", "gb18030", "shift_jis"]
NOT_PHI = {"ANONYMIZED", "ANONYMOUS", "Anonymized", "Anonymous", "TEST", "Test", "NONE", "None", "UNKNOWN", "Name"}


TEXT_VRS = {"LO", "SH", "PN", "LT", "ST", "UT", "UC"}


def phi_values(ds: pydicom.Dataset) -> tuple[set[str], set[str]]:
    """Return (identifying values, dates) of one input file as text (4+ characters, name parts 3+, or 2+ outside ASCII: "OB" is also a VR in the bytes).

    Dates are searched only in the file's own output: after a per-patient shift, one patient's date can
    equal another's real date without revealing anything.
    """
    values, dates = set(), set()
    for element in ds.iterall():
        private_text = element.tag.is_private and element.VR in TEXT_VRS and re.search(r"[^\W\d_]", str(element.value))
        if element.keyword in PHI_KEYWORDS or element.keyword == "PatientName" or private_text:
            if element.VR in ("SQ", "OB", "OW", "UN"):
                continue
            text = str(element.value)
            if element.VR in ("DA", "DT"):
                dates.update(d for d in text.split("\\") if len(d) >= 8)
            elif element.VR == "PN":
                values.update(p for group in text.split("=") for p in re.split(r"[\^ ]", group) if len(p) >= 3 or not p.isascii())
            elif len(text) >= 4:
                values.add(text)
    return values - NOT_PHI, dates


def public_values(ds: pydicom.Dataset) -> set[str]:
    """Return text of non-identifying public attributes (a vendor name typed as institution elsewhere is no leak)."""
    return {str(e.value) for e in ds.iterall() if not e.tag.is_private and e.VR in (TEXT_VRS | {"CS"}) - {"PN"}
            and e.keyword not in PHI_KEYWORDS}


def decoded(path: Path) -> str:
    """Return a file's bytes decoded with every codec the inputs use."""
    data = path.read_bytes()
    return "\n".join(data.decode(codec, errors="ignore") for codec in CODECS)


def main() -> None:
    """Run the scan and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    repo = Path(args.repo)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = OmegaConf.create(compose_params(repo / "conf"))
        write_cohort(CohortSpec.from_config(cfg.data.synthetic), tmp / "raw")
        corpora = {site: tmp / "raw" / site / "dicom" for site in cfg.study.sites}
        corpora["pydicom"] = tmp / "pydicom"
        corpora["pydicom"].mkdir()
        for path in (Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"):
            shutil.copy(path, corpora["pydicom"])
        report = {}
        for name, src in corpora.items():
            key_file = tmp / "raw" / "keys" / f"{name}.key"
            if not key_file.exists():
                key_file.write_text("leak-scan-key-" + "0" * 32)
            out, log_file = tmp / "out" / name, tmp / f"{name}.log"
            with open(log_file, "w") as log:
                result = subprocess.run([sys.executable, "-m", "crossmed.cli", "deidentify", str(src), str(out), "--key-file",
                                         str(key_file), "--patient-prefix", f"{name}-", "--option", "retain_long_modified_dates",
                                         "--option", "retain_patient_characteristics", "--option", "clean_descriptors",
                                         "--allow-burned-in", "--mapping-out", str(tmp / f"{name}.mapping.csv")], stdout=log, stderr=subprocess.STDOUT, env=os.environ)
            rejected_sources = {line.split(",", 1)[0] for line in (out / "rejected.csv").read_text().splitlines()[1:]}
            phi, public, dates_of_output = set(), set(), {}
            mapping = {row.split(",")[0]: row.split(",")[-1] for row in (tmp / f"{name}.mapping.csv").read_text().splitlines()[1:]}
            for path in (p for p in src.rglob("*") if p.is_file()):
                if path.relative_to(src).as_posix() in rejected_sources:
                    continue  # a refused file's values never reach the output (its path is listed for the steward)
                try:
                    ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
                    values, dates = phi_values(ds)
                except Exception:
                    continue
                phi |= values
                public |= public_values(ds)
                output = mapping.get(path.relative_to(src).as_posix())
                if output:
                    dates_of_output[output] = dates
            phi = {v for v in phi - public if re.search(r"\w", v)}
            key = key_file.read_text().strip()
            values = sorted(phi)
            outputs = [p for p in out.rglob("*") if p.is_file() and p.name != "rejected.csv"] + [log_file]
            hits = {}
            for path in outputs:
                text = decoded(path)
                # A fast substring test first; a hit counts only as a whole word ('Han' in 'Hanbit' is none).
                own_dates = dates_of_output.get(path.relative_to(out).as_posix() if out in path.parents else "", set())
                found = [v for v in [*values, *own_dates]
                         if v in text and re.search(rf"(?<![\w.]){re.escape(v)}(?![\w.])", text)]
                if key in text:
                    found.append("<the site key>")
                if found:
                    hits[str(path.relative_to(tmp))] = sorted(found)[:10]
            report[name] = {"exit_code": result.returncode, "phi_values_searched": len(phi),
                            "dates_searched_in_their_own_file": sum(len(d) for d in dates_of_output.values()), "output_files_scanned": len(outputs),
                            "bytes_scanned": sum(p.stat().st_size for p in outputs), "files_with_hits": len(hits),
                            "hits": dict(list(hits.items())[:20])}
    print(json.dumps({"corpora": report, "total_hits": sum(r["files_with_hits"] for r in report.values())}, indent=2,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
