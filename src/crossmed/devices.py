"""Pick the compute device and set the reproducibility switches that go with it."""

import logging
import os
import random

import numpy as np
import torch

from crossmed.errors import ConfigError

log = logging.getLogger("crossmed.devices")


def resolve_device(name: str) -> torch.device:
    """Return the torch device for 'auto', 'cpu', 'cuda' or 'cuda:N'; raise ConfigError if it is unavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError("device", f"'{name}' is not a device (auto, cpu, cuda, cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"'{name}' requested but CUDA is not available on this machine")
    return device


def seed_everything(seed: int, deterministic: bool, device: torch.device, cudnn_benchmark: bool) -> None:
    """Seed Python, NumPy, torch and MONAI; make kernels deterministic or let cuDNN pick the fastest."""
    from monai.utils import set_determinism

    random.seed(seed)
    np.random.seed(seed % 2**32)
    set_determinism(seed=seed)  # seeds torch too; MONAI random transforms draw from these states
    if device.type == "cpu":
        # Denormal floats (from near-zero BatchNorm statistics early in training) slow x86 CPUs several-fold.
        torch.set_flush_denormal(True)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    else:
        torch.use_deterministic_algorithms(False)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = deterministic
        torch.backends.cudnn.benchmark = cudnn_benchmark and not deterministic
        torch.backends.cuda.matmul.allow_tf32 = not deterministic
        torch.backends.cudnn.allow_tf32 = not deterministic


def describe_device(device: torch.device) -> dict:
    """Return what was used to compute: device name, thread count and torch build."""
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
