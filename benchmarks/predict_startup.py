"""Start-up of `crossmed predict` as a user meets it: wall time of the command for a missing model folder, for a
missing image (both answered before PyTorch loads), and for one real image; prints JSON.

Needs `dvc repro` (models/export and data/deidentified) first.
Run: `.venv/bin/python benchmarks/predict_startup.py [--runs 3]`.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import median_seconds  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    """Time the three commands (median of --runs) and print them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    image = next((REPO / "data" / "deidentified" / "EE").rglob("*.dcm"))
    predict = [sys.executable, "-m", "crossmed.cli", "predict"]
    cases = {"missing_model_folder": [*predict, str(REPO / "models" / "no-such-export"), str(image)],
             "missing_image": [*predict, str(REPO / "models" / "export"), str(REPO / "no-such-image.dcm")],
             "one_dicom_image": [*predict, str(REPO / "models" / "export"), str(image)]}
    figures = {}
    for name, command in cases.items():
        figures[name] = round(median_seconds(lambda: subprocess.run(command, capture_output=True, cwd=REPO), args.runs), 2)
    print(json.dumps({"benchmark": "predict_startup", "runs": args.runs, "seconds": figures}, indent=2))


if __name__ == "__main__":
    main()
