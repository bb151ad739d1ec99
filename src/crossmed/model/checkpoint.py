"""Save and load the best model: weights plus what is needed to rebuild and feed it; the network ready to use."""

import io
from pathlib import Path

import torch

from crossmed.errors import InputError
from crossmed.files import write_bytes_atomic
from crossmed.model.networks import build_network


def save_checkpoint(path: str | Path, net: torch.nn.Module, info: dict) -> None:
    """Write the network's weights (contiguous, CPU) and `info` atomically; equal contents give equal bytes."""
    state = {k: v.detach().to("cpu", memory_format=torch.contiguous_format).clone() for k, v in net.state_dict().items()}
    buffer = io.BytesIO()  # torch.save names its zip archive after a file: a buffer keeps the bytes a function of the contents
    torch.save({"state_dict": state, **info}, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    """Return a checkpoint written by save_checkpoint; raise InputError naming the file when unusable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint not found; run the train stage first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InputError(path, f"not a readable checkpoint ({err})") from err
    for key in ("state_dict", "model", "task", "input_shape"):
        if key not in checkpoint:
            raise InputError(path, f"checkpoint lacks '{key}'")
    return checkpoint


def load_trained_network(checkpoint_path: str | Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Return the checkpoint's network in eval mode on `device`, and the checkpoint."""
    checkpoint = load_checkpoint(checkpoint_path)
    net = build_network(checkpoint["model"]["net"])  # the net config as trained: channels and classes from the data
    net.load_state_dict(checkpoint["state_dict"])
    return net.to(device).eval(), checkpoint
