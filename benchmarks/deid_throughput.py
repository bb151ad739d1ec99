"""De-identification throughput of this checkout beside an earlier commit of crossmed (and dicognito, when installed),
on the same files; prints JSON.

Corpora: pydicom's installed test files, and a generated tree of synthetic DX files (default 2,000). Every
variant runs in its own process over the same input, alternating (this machine's speed drifts), and the
median of the repeats is reported with the ratio this-checkout / baseline. The baseline is read from git
(`git archive REF src`), so the comparison needs no second checkout.

Run: `.venv/bin/python benchmarks/deid_throughput.py [--baseline-ref e79c02b] [--files 2000]`
(`.venv/bin/pip install -c constraints.txt -e '.[bench]'` adds dicognito).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import pydicom

REPO = Path(__file__).resolve().parent.parent
KEY = b"benchmark-site-key-0123456789abcdef"
OPTIONS = ["retain_long_modified_dates", "retain_patient_characteristics", "clean_descriptors"]

# Runs one de-identification in a fresh process; works with the API before and after DeidSettings.
RUNNER = """
import inspect, json, sys, time
from pathlib import Path
from crossmed.deid.profile import load_profile
from crossmed.deid import tree
src, dst, options, workers = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
key = sys.argv[5].encode()
started = time.perf_counter()
if "settings" in inspect.signature(tree.deidentify_tree).parameters:
    from crossmed.deid.settings import DeidSettings
    summary = tree.deidentify_tree(src, dst, DeidSettings(load_profile(options), key, "KR-", allow_burned_in=True,
                                                          workers=workers))
else:
    summary = tree.deidentify_tree(src, dst, key, load_profile(options), patient_prefix="KR-", allow_burned_in=True,
                                   workers=workers)
print(json.dumps({"files": summary.read, "written": summary.written, "rejected": summary.rejected,
                  "seconds": time.perf_counter() - started}))
"""

DICOGNITO_RUNNER = """
import json, sys, time
from pathlib import Path
import pydicom
from dicognito.anonymizer import Anonymizer
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
anonymizer, written, failed = Anonymizer(seed="benchmark"), 0, 0
files = sorted(p for p in src.rglob("*") if p.is_file())
started = time.perf_counter()
for index, path in enumerate(files):
    try:
        ds = pydicom.dcmread(path)
        anonymizer.anonymize(ds)
        ds.save_as(dst / f"{index:06d}.dcm")
        written += 1
    except Exception:
        failed += 1
print(json.dumps({"files": len(files), "written": written, "rejected": failed, "seconds": time.perf_counter() - started}))
"""


def generated_tree(root: Path, n_files: int) -> Path:
    """Write a synthetic KR cohort of about `n_files` DX files (2.5 images per patient on average)."""
    from crossmed.synthetic.cohort import CohortSpec, SiteSpec, write_cohort
    from crossmed.synthetic.phantom import Acquisition

    site = SiteSpec("KR", "강원대학교병원", "춘천시", "ko", "ISO 2022 IR 149", max(1, round(n_files / 2.5)),
                    Acquisition(96, 0.667, 1.0, 0.35, 0.0), 1.0, -1024.0, 220.0, "Hanbit Medical", "HDR-9000")
    write_cohort(CohortSpec(11, 64.0, 0.4, (1, 4), (3.0, 7.0), (2.2, 4.5), (site,)), root)
    return root / "KR" / "dicom"


def baseline_source(ref: str, target: Path) -> Path:
    """Extract `src/` of the git revision `ref` into `target`; return the folder to put on PYTHONPATH."""
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=REPO, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def run_variant(name: str, python_path: str | None, src: Path, dst: Path, workers: int) -> dict:
    """Run one variant in a fresh process and return its figures."""
    env = {**os.environ}
    if python_path:
        env["PYTHONPATH"] = python_path
    args = [sys.executable, "-c", DICOGNITO_RUNNER if name == "dicognito" else RUNNER, str(src), str(dst)]
    if name == "dicognito":
        dst.mkdir(parents=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        args += [",".join(OPTIONS), str(workers), KEY.decode()]
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(corpus: str, src: Path, work: Path, variants: dict, workers: int, repeats: int) -> dict:
    """Run every variant `repeats` times, alternating, and return the medians and the ratios to the baseline."""
    runs = {name: [] for name in variants}
    for attempt in range(repeats):
        for name, python_path in variants.items():
            runs[name].append(run_variant(name, python_path, src, work / f"{name}-{attempt}", workers))
    figures = {}
    for name, results in runs.items():
        median = sorted(results, key=lambda r: r["seconds"])[repeats // 2]
        figures[name] = {**median, "seconds": round(median["seconds"], 3),
                         "files_per_second": round(median["files"] / median["seconds"], 1),
                         "seconds_per_repeat": [round(r["seconds"], 3) for r in results]}
    out = {"corpus": corpus, "repeats": repeats, **figures}
    if "baseline" in figures:
        out["ratio_current_to_baseline"] = round(figures["current"]["files_per_second"] /
                                                 figures["baseline"]["files_per_second"], 3)
    if "dicognito" in figures:
        out["ratio_current_to_dicognito"] = round(figures["current"]["files_per_second"] /
                                                  figures["dicognito"]["files_per_second"], 3)
    return out


def main() -> None:
    """Print one JSON object with both corpora."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=2000, help="size of the generated tree")
    parser.add_argument("--workers", type=int, default=1, help="crossmed worker processes")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each variant; medians are reported")
    parser.add_argument("--baseline-ref", default="e79c02b",
                        help="git revision to compare with (default: the last commit before the issue-14 changes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        variants = {"current": str(REPO / "src"), "baseline": str(baseline_source(args.baseline_ref, tmp / "baseline"))}
        try:
            import dicognito  # noqa: F401

            variants["dicognito"] = None
        except ImportError:
            pass
        corpus = tmp / "pydicom"
        corpus.mkdir()
        for path in (Path(pydicom.__file__).parent / "data" / "test_files").glob("*.dcm"):
            shutil.copy(path, corpus)
        tree = generated_tree(tmp / "generated", args.files)
        results = [compare("pydicom test files", corpus, tmp / "run1", variants, args.workers, args.repeats),
                   compare(f"generated tree ({args.files} DX files)", tree, tmp / "run2", variants, args.workers,
                           args.repeats)]
    print(json.dumps({"baseline_ref": args.baseline_ref, "pydicom_version": pydicom.__version__,
                      "crossmed_workers": args.workers, "results": results}, indent=2))


if __name__ == "__main__":
    main()
