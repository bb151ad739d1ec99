"""Leak scan: de-identify the synthetic two-site cohort and pydicom's test files with the `crossmed` command,
then search every output byte (DICOM, CSV, the command's log) for every identifying value of the inputs and
for the site key; prints JSON. Source paths hold patient IDs and dates here, as hospital exports do.

Run: `.venv/bin/python benchmarks/deid_leak_scan.py`. Goal: zero hits.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pydicom
from omegaconf import OmegaConf

from crossmed.deid.leak_scan import dicom_values, public_values, scan_files, table_values
from crossmed.params_file import compose_params
from crossmed.synthetic.cohort import CohortSpec, write_cohort

OPTIONS = ["retain_long_modified_dates", "retain_patient_characteristics", "clean_descriptors"]


def corpora(repo: Path, tmp: Path) -> dict[str, tuple[Path, Path | None]]:
    """Return {name: (source folder, clinical table or None)} for the synthetic sites and pydicom's test files."""
    cfg = OmegaConf.create(compose_params(repo / "conf"))
    write_cohort(CohortSpec.from_config(cfg.data.synthetic), tmp / "raw")
    found = {site: (tmp / "raw" / site / "dicom", tmp / "raw" / site / "labels.csv") for site in cfg.study.sites}
    found["pydicom"] = (tmp / "pydicom", None)
    found["pydicom"][0].mkdir()
    for path in (Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"):
        shutil.copy(path, found["pydicom"][0])
    return found


def main() -> None:
    """Run the scan and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    args = parser.parse_args()
    repo = Path(args.repo)
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, (src, table) in corpora(repo, tmp).items():
            key_file, out, log_file = tmp / "site" / f"{name}.key", tmp / "out" / name, tmp / f"{name}.log"
            key_file.parent.mkdir(exist_ok=True)
            key_file.write_text(os.urandom(32).hex() + "\n")
            command = [sys.executable, "-m", "crossmed.cli", "deidentify", str(src), str(out), "--key-file", str(key_file),
                       "--patient-prefix", f"{name}-", "--allow-burned-in", "--site-records", str(tmp / "site" / name),
                       *[a for option in OPTIONS for a in ("--option", option)]]
            with open(log_file, "w") as log:
                result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
            values, public = set(), set()
            for path in (p for p in src.rglob("*") if p.is_file()):
                values |= dicom_values(path)
                public |= public_values(path)
            values -= public  # a vendor's or protocol's word in a private tag is public elsewhere, not a leak
            if table is not None:
                values |= table_values(table, ("patient_id", "patient_name"))
            key = key_file.read_text().strip().encode()
            scan = scan_files([out, log_file], values, secrets=(key, bytes.fromhex(key.decode())))
            report[name] = {"exit_code": result.returncode, "values_searched": scan.values, "output_files_scanned": scan.files,
                            "bytes_scanned": scan.bytes, "files_with_hits": len(scan.hits),
                            "hits": dict(list(scan.hits.items())[:20])}
    print(json.dumps({"corpora": report, "total_hits": sum(r["files_with_hits"] for r in report.values())}, indent=2,
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
