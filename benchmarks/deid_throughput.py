"""De-identification throughput of crossmed beside dicognito (PyPI) on the same files; prints JSON.

Corpora: pydicom's installed test files, and a generated tree of synthetic DX files (default 2,000).
Both tools read every file, de-identify it and write it; crossmed also writes audit.csv and rejected.csv.
Run: `.venv/bin/pip install dicognito && .venv/bin/python benchmarks/deid_throughput.py`.
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import pydicom

from crossmed.deid.profile import load_profile
from crossmed.deid.tree import deidentify_tree
from crossmed.synthetic.cohort import CohortSpec, SiteSpec, write_cohort
from crossmed.synthetic.phantom import Acquisition

KEY = b"benchmark-site-key-0123456789abcdef"
OPTIONS = ["retain_long_modified_dates", "retain_patient_characteristics", "clean_descriptors"]


def generated_tree(root: Path, n_files: int) -> Path:
    """Write a synthetic KR cohort of about `n_files` DX files (2.5 images per patient on average)."""
    site = SiteSpec("KR", "강원대학교병원", "춘천시", "ko", "ISO 2022 IR 149", max(1, round(n_files / 2.5)),
                    Acquisition(96, 0.667, 1.0, 0.35, 0.0), 1.0, -1024.0, 220.0, "Hanbit Medical", "HDR-9000")
    spec = CohortSpec(11, 64.0, 0.4, (1, 4), (3.0, 7.0), (2.2, 4.5), (site,))
    write_cohort(spec, root)
    return root / "KR" / "dicom"


def run_crossmed(src: Path, dst: Path, workers: int) -> dict:
    """Return files, written, rejected and seconds for crossmed on `src`."""
    summary = deidentify_tree(src, dst, KEY, load_profile(OPTIONS), patient_prefix="KR-", allow_burned_in=True, workers=workers)
    return {"files": summary.read, "written": summary.written, "rejected": summary.rejected, "seconds": round(summary.seconds, 3)}


def run_dicognito(src: Path, dst: Path) -> dict:
    """Return files, written, failed and seconds for dicognito's Anonymizer over the same files (read, anonymise, write)."""
    from dicognito.anonymizer import Anonymizer

    anonymizer = Anonymizer(seed="benchmark")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    written = failed = 0
    started = time.perf_counter()
    for index, path in enumerate(files):
        try:
            ds = pydicom.dcmread(path)
            anonymizer.anonymize(ds)
            ds.save_as(dst / f"{index:06d}.dcm")
            written += 1
        except Exception:
            failed += 1
    return {"files": len(files), "written": written, "failed": failed, "seconds": round(time.perf_counter() - started, 3)}


def compare(name: str, src: Path, work: Path, workers: int, repeats: int) -> dict:
    """Run both tools `repeats` times, alternating (this machine's speed drifts), and return the median figures."""
    ours_runs, theirs_runs = [], []
    for attempt in range(repeats):
        (work / f"dicognito{attempt}").mkdir(parents=True)
        ours_runs.append(run_crossmed(src, work / f"crossmed{attempt}", workers))
        theirs_runs.append(run_dicognito(src, work / f"dicognito{attempt}"))
    ours = sorted(ours_runs, key=lambda r: r["seconds"])[repeats // 2]
    theirs = sorted(theirs_runs, key=lambda r: r["seconds"])[repeats // 2]
    ours["files_per_second"] = round(ours["files"] / ours["seconds"], 1)
    theirs["files_per_second"] = round(theirs["files"] / theirs["seconds"], 1)
    ratios = sorted(t["seconds"] / o["seconds"] for o, t in zip(ours_runs, theirs_runs))
    return {"corpus": name, "repeats": repeats, "crossmed": ours, "dicognito": theirs,
            "ratio_crossmed_to_dicognito": round(ours["files_per_second"] / theirs["files_per_second"], 2),
            "ratio_per_repeat": [round(r, 2) for r in ratios]}


def main() -> None:
    """Print one JSON object with both corpora."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000, help="size of the generated tree")
    parser.add_argument("--workers", type=int, default=1, help="crossmed worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each tool; medians are reported")
    args = parser.parse_args()
    import dicognito

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pydicom_files = Path(pydicom.__file__).parent / "data" / "test_files"
        corpus = tmp / "pydicom"
        corpus.mkdir()
        for path in pydicom_files.glob("*.dcm"):
            shutil.copy(path, corpus)
        started = time.perf_counter()
        tree = generated_tree(tmp / "generated", args.files)
        generated_seconds = time.perf_counter() - started
        results = [compare("pydicom test files", corpus, tmp / "run1", args.workers, args.repeats),
                   compare("generated tree", tree, tmp / "run2", args.workers, args.repeats)]
        results[1]["generation_seconds"] = round(generated_seconds, 1)
    print(json.dumps({"dicognito_version": dicognito.__version__, "pydicom_version": pydicom.__version__,
                      "crossmed_workers": args.workers, "results": results}, indent=2))


if __name__ == "__main__":
    main()
