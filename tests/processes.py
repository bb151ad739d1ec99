"""Run the train stage in its own Python process (as `dvc repro` does), for tests and benchmarks that kill, resume or time it."""

import os
import signal
import subprocess
import sys


def train_in_subprocess(config: str, kill_at: str | None = None) -> tuple[int, str]:
    """Run the train stage on `config` in a new Python process; SIGKILL it when `kill_at` appears in its log. Return (exit code, log)."""
    process = subprocess.Popen([sys.executable, "-m", "crossmed.stages", "train", str(config)], stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = []
    for line in process.stderr:
        log.append(line)
        if kill_at and kill_at in line:
            process.send_signal(signal.SIGKILL)
            break
    process.stderr.close()
    return process.wait(), "".join(log)
