"""Training speed with and without portable CPU arithmetic (reproducibility.cpu), on the same data; prints JSON.

Each variant runs the train stage in its own process (`python -m crossmed.stages train`, as `dvc repro`
would) for --epochs epochs; throughput is the median of the per-epoch images/second the stage logs, after the
first epoch. Portable runs also report their checkpoint's md5 (the same for every portable run, on any CPU).
Uses the processed data of the current checkout (run `dvc repro` first) or --processed.
Run: `.venv/bin/python benchmarks/portable_cpu.py [--epochs 4] [--repeats 1] [-o model=resnet18 ...]`.
"""

import argparse
import hashlib
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parent.parent
EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ done: .* (\d+) img/s")


def _config(root: Path, processed: Path, epochs: int, mode: str, overrides: list[str]) -> Path:
    from crossmed.params_file import compose_params
    from crossmed.study_paths import folder_overrides

    cfg = OmegaConf.create(compose_params(REPO / "conf", overrides=[f"train.max_epochs={epochs}", "device=cpu",
                                                                    f"reproducibility.cpu={mode}", "train.resume=false",
                                                                    *folder_overrides(root, ("models", "experiments")), *overrides]))
    cfg.paths.processed = str(processed)
    cfg.mlflow.tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    OmegaConf.save(cfg, root / "config.yaml")
    return root / "config.yaml"


def _train(root: Path, processed: Path, epochs: int, mode: str, overrides: list[str]) -> dict:
    sys.path.insert(0, str(REPO / "tests"))  # the tests' helper that runs the train stage in its own process
    from processes import train_in_subprocess

    root.mkdir(parents=True)
    code, log = train_in_subprocess(str(_config(root, processed, epochs, mode, overrides)))
    if code != 0:
        sys.exit(f"{mode} training failed:\n{log[-3000:]}")
    rates = [float(rate) for epoch, rate in EPOCH_LINE.findall(log) if int(epoch) > 1]
    threads = re.search(r"'threads': (\d+)", log)
    return {"images_per_second": round(statistics.median(rates), 1), "threads": int(threads.group(1)) if threads else None,
            "checkpoint_md5": hashlib.md5((root / "models" / "checkpoint.pt").read_bytes()).hexdigest()}


def main() -> None:
    """Train natively and portably, interleaved; print the throughputs and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--processed", default=str(REPO / "data" / "processed"))
    parser.add_argument("-o", "--override", action="append", default=[], help="a Hydra override, e.g. model=resnet18")
    args = parser.parse_args()
    processed = Path(args.processed)
    if not (processed / "manifest.csv").is_file():
        sys.exit(f"{processed} has no processed data: run `dvc repro preprocess` first or give --processed")
    runs = {"native": [], "portable": []}
    with tempfile.TemporaryDirectory(prefix="crossmed-portable-") as tmp:
        for repeat in range(args.repeats):
            for mode in runs:
                runs[mode].append(_train(Path(tmp) / f"{mode}{repeat}", processed, args.epochs, mode, args.override))
    native = statistics.median(r["images_per_second"] for r in runs["native"])
    portable = statistics.median(r["images_per_second"] for r in runs["portable"])
    print(json.dumps({"epochs": args.epochs, "overrides": args.override, "runs": runs,
                      "native_images_per_second": native, "portable_images_per_second": portable,
                      "ratio_portable_to_native": round(portable / native, 3),
                      "portable_checkpoints_identical": len({r["checkpoint_md5"] for r in runs["portable"]}) == 1}, indent=2))


if __name__ == "__main__":
    main()
