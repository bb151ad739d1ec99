"""Portable CPU arithmetic: the same checkpoint bytes whatever kernels the CPU offers and however many threads it has.

Other machines are emulated on this one by capping each kernel library at an instruction set (ATen, oneDNN,
MKL) and by changing the thread count. Natively those choices change the weights (the control below), so
the test can fail; with reproducibility.cpu=portable they must not.
"""

import hashlib
import os
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import tiny_config
from crossmed.model.checkpoint import save_checkpoint
from processes import train_in_subprocess

# (name, environment) of emulated machines: every kernel library capped at one instruction set, and a thread count.
MACHINES = [
    ("AVX-512, 4 threads", {"OMP_NUM_THREADS": "4"}),
    ("AVX2, 2 threads", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                         "OMP_NUM_THREADS": "2"}),
    ("baseline x86-64, 1 thread", {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                                   "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1"}),
]


def _checkpoint_md5(tmp_path: Path, tiny_study, name: str, mode: str, machine: dict, monkeypatch) -> str:
    cfg = tiny_config(tmp_path / name, "device=cpu", f"reproducibility.cpu={mode}", "train.max_epochs=1",
                      "train.batch_size=8")
    cfg.paths.processed = tiny_study.paths.processed
    OmegaConf.save(cfg, tmp_path / f"{name}.yaml")
    with monkeypatch.context() as patch:
        for key in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "OMP_NUM_THREADS",
                    "MKL_NUM_THREADS", "CROSSMED_PORTABLE_CPU"):
            patch.delenv(key, raising=False)
        for key, value in machine.items():
            patch.setenv(key, value)
        code, log = train_in_subprocess(str(tmp_path / f"{name}.yaml"))
    assert code == 0, log[-3000:]
    assert ("arithmetic: portable" in log) == (mode == "portable"), log[-2000:]
    return hashlib.md5((tmp_path / name / "models" / "checkpoint.pt").read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512", reason="emulating AVX2 and baseline CPUs needs an AVX-512 CPU")
def test_portable_training_gives_the_same_checkpoint_on_every_emulated_cpu(tmp_path, tiny_study, monkeypatch):
    native = {name: _checkpoint_md5(tmp_path, tiny_study, f"native{i}", "native", env, monkeypatch)
              for i, (name, env) in enumerate(MACHINES[:2])}
    assert len(set(native.values())) == 2, f"control: natively these machines train different weights {native}"
    portable = {name: _checkpoint_md5(tmp_path, tiny_study, f"portable{i}", "portable", env, monkeypatch)
                for i, (name, env) in enumerate(MACHINES)}
    assert len(set(portable.values())) == 1, f"portable mode gave different checkpoints: {portable}"


def test_equal_weights_give_equal_checkpoint_bytes(tmp_path):
    net = torch.nn.Linear(3, 2)
    (tmp_path / "b").mkdir()
    save_checkpoint(tmp_path / "a.pt", net, {"epoch": 1})
    save_checkpoint(tmp_path / "b" / "other-name.pt", net, {"epoch": 1})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b" / "other-name.pt").read_bytes(), \
        "the bytes must not depend on the file name (DVC hashes them)"


def test_a_stage_restarts_itself_with_the_portable_environment(tmp_path):
    """The stage process re-executes once with the portable environment and computes with the baseline kernels."""
    import subprocess
    import sys

    script = tmp_path / "stage.py"
    script.write_text(
        "import os, sys\n"
        "from omegaconf import OmegaConf\n"
        "from crossmed.reproducibility import enter_stage, in_effect\n"
        "cfg = OmegaConf.create({'device': 'cpu', 'reproducibility': {'cpu': sys.argv[1]}})\n"
        "enter_stage(cfg)\n"
        "import torch\n"
        "print(in_effect(cfg), torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), torch.backends.mkldnn.enabled)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS",
                                                            "MKL_NUM_THREADS", "CROSSMED_PORTABLE_CPU")}
    portable = subprocess.run([sys.executable, str(script), "portable"], capture_output=True, text=True, env=env, timeout=120)
    assert portable.returncode == 0, portable.stderr
    assert portable.stdout.split() == ["portable", "DEFAULT", "1", "False"]
    native = subprocess.run([sys.executable, str(script), "native"], capture_output=True, text=True, env=env, timeout=120)
    assert native.stdout.split()[0] == "native" and native.stdout.split()[3] == "True"
    wrong = subprocess.run([sys.executable, str(script), "fastest"], capture_output=True, text=True, env=env, timeout=120)
    assert wrong.returncode != 0 and "reproducibility.cpu" in wrong.stderr
