"""Time the default study: a forced `dvc repro` of every stage, then a no-op `dvc repro`; print JSON with the AUCs.

Run from the repository root after set-up: `.venv/bin/python benchmarks/study_runtime.py`.
Targets (issue 2): full repro < 600 s on a 2-core CPU, no-op repro < 5 s, internal-test AUC >= 0.85.
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path


def _timed(args: list[str], cwd: Path) -> tuple[float, str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    started = time.perf_counter()
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return seconds, result.stdout + result.stderr


def main() -> None:
    """Run the timings and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=".", help="crossmed checkout to run in (default: current directory)")
    parser.add_argument("--skip-full", action="store_true", help="only time the no-op repro and read the metrics")
    args = parser.parse_args()
    repo = Path(args.repo).resolve()
    figures = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}}
    if not args.skip_full:
        seconds, output = _timed(["dvc", "repro", "--force"], repo)
        figures["full_repro_seconds"] = round(seconds, 1)
        figures["stages_run"] = re.findall(r"Running stage '([^']+)'", output)
        figures["train_images_per_second_last_epoch"] = _last_rate(output)
    seconds, output = _timed(["dvc", "repro"], repo)
    figures["noop_repro_seconds"] = round(seconds, 2)
    figures["noop_repro_stages_run"] = re.findall(r"Running stage '([^']+)'", output)
    metrics = json.loads((repo / "experiments" / "metrics.json").read_text())
    figures["internal_test"] = metrics.get("internal_test")
    figures["external_test"] = metrics.get("external_test")
    figures["targets"] = {"full_repro_under_600_s": figures.get("full_repro_seconds", 0) < 600,
                          "noop_repro_under_5_s": figures["noop_repro_seconds"] < 5,
                          "internal_auc_at_least_0.85": (metrics.get("internal_test") or {}).get("auc", 0) >= 0.85}
    print(json.dumps(figures, indent=2))


def _last_rate(output: str) -> float | None:
    rates = re.findall(r"epoch \d+/\d+ done: .*?, (\d+) img/s", output)
    return float(rates[-1]) if rates else None


if __name__ == "__main__":
    main()
