"""Portable CPU arithmetic: the same bits from training and evaluation on any x86-64 CPU and thread count.

PyTorch's CPU kernels are chosen per machine: ATen's vectorised kernels by the CPU's instruction set
(AVX-512, AVX2 or the baseline), convolutions by oneDNN (also per instruction set), matrix products by
MKL (per instruction set and thread count), and reductions split across threads. Each choice rounds
differently, so two CPUs train different weights from the same data. `reproducibility.cpu: portable`
pins every one of them to a code path that exists on every x86-64 CPU and runs on one thread:

- ATen: ATEN_CPU_CAPABILITY=default (the baseline kernels, not AVX2/AVX-512);
- MKL: MKL_CBWR=COMPATIBLE,STRICT (Intel's conditional numerical reproducibility, baseline branch);
- oneDNN and NNPACK off (convolutions by ATen's im2col + MKL GEMM);
- one intra-op thread (OMP_NUM_THREADS=MKL_NUM_THREADS=1, torch.set_num_threads(1)).

The environment must be set before PyTorch starts computing, so a stage re-executes itself once with it.
Not covered: GPU kernels (they differ between GPU models), other Python or library versions
(constraints.txt pins them), and CPUs other than x86-64.
"""

import logging
import os
import sys

from crossmed.errors import ConfigError

log = logging.getLogger("crossmed.reproducibility")
MODES = ("portable", "native")
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE,STRICT", "MKL_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1"}
ACTIVE_MARK = "CROSSMED_PORTABLE_CPU"  # set in the re-executed process


def cpu_mode(cfg) -> str:
    """Return reproducibility.cpu ('portable' or 'native'); raise ConfigError for another value."""
    mode = str(cfg.get("reproducibility", {}).get("cpu", "native"))
    if mode not in MODES:
        raise ConfigError("reproducibility.cpu", f"'{mode}' is not a mode (known: {', '.join(MODES)})")
    return mode


def wanted(cfg, on_cpu: bool = False) -> bool:
    """True when the config asks for portable arithmetic and the stage computes on the CPU (`on_cpu`: whatever `device` says)."""
    from crossmed.devices import resolve_device

    return cpu_mode(cfg) == "portable" and (on_cpu or resolve_device(str(cfg.device)).type == "cpu")


def active() -> bool:
    """True when this process was started with the portable environment (by enter_stage or by hand)."""
    return all(os.environ.get(key) == value for key, value in PORTABLE_ENV.items())


def enter_stage(cfg, on_cpu: bool = False) -> None:
    """Make this stage process compute portably when the config asks for it: re-execute it once with the
    portable environment (nothing has been computed yet), then switch off oneDNN, NNPACK and extra threads."""
    if not wanted(cfg, on_cpu):
        return
    if not active():
        if os.environ.get(ACTIVE_MARK):
            raise ConfigError("reproducibility.cpu", "the portable environment was changed after the stage started")
        log.info("reproducibility.cpu=portable: restarting the stage with %s",
                 " ".join(f"{k}={v}" for k, v in PORTABLE_ENV.items()))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **PORTABLE_ENV, ACTIVE_MARK: "1"})
    apply_torch_settings()


def apply_torch_settings() -> None:
    """Switch PyTorch to the portable code paths (the environment must already be set); raise if it is not."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "DEFAULT":
        raise ConfigError("reproducibility.cpu", f"PyTorch already chose {capability} kernels; start the process with "
                                                 f"{' '.join(f'{k}={v}' for k, v in PORTABLE_ENV.items())}")
    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(1)


def in_effect(cfg, on_cpu: bool = False) -> str:
    """Return how this process computes: 'portable' when the portable CPU settings are in effect, 'native' for
    the machine's own CPU kernels, 'cuda' on a GPU.

    A library call in a process started without the portable environment (a notebook, a test) computes natively,
    with a warning, and says so: its numbers repeat on this machine and thread count only.
    """
    from crossmed.devices import resolve_device

    if not on_cpu and resolve_device(str(cfg.device)).type == "cuda":
        return "cuda"
    if not wanted(cfg, on_cpu):
        return "native"
    if active():
        apply_torch_settings()
        return "portable"
    log.warning("reproducibility.cpu=portable needs the stage's own process (dvc repro, python pipelines/<stage>.py); "
                "this call computes natively: bitwise repeatable on this machine and thread count only")
    return "native"


SCOPE = {"portable": "bitwise the same on any x86-64 CPU and thread count (same package versions)",
         "native": "bitwise the same on this machine and thread count only",
         "cuda": "GPU kernels: repeatable on the same GPU model and software with train.deterministic; not across GPU models"}


def describe(mode: str) -> dict:
    """Return the arithmetic facts a run records: mode, what it promises, kernel family and threads."""
    import torch

    return {"arithmetic": mode, "scope": SCOPE[mode], "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
            "mkl_cbwr": os.environ.get("MKL_CBWR", "auto"), "onednn": str(torch.backends.mkldnn.enabled),
            "threads": str(torch.get_num_threads())}
