"""The resumable training state: everything an interrupted run needs to continue exactly where it stopped."""

import hashlib
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from crossmed.files import atomic_path

log = logging.getLogger("crossmed.train")
STATE_FILE = "train_state.pt"
STATE_FORMAT = 2  # bumped when the saved state changes shape (2: RNG states per rank)


def fingerprint(*parts) -> str:
    """Return a SHA-256 of JSON-able parts (config, data hashes): a state is resumed only by the same training."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    """Return the SHA-256 of a file (the processed manifest holds a content hash per image)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _random_transforms(loader) -> list:
    """Return the loader's MONAI transforms that draw random numbers (they own a RandomState `R`)."""
    transform = getattr(loader.dataset, "transform", None)
    return [t for t in getattr(transform, "transforms", ()) if hasattr(t, "R")]


def rng_states(loader) -> dict:
    """Return every random number generator state the next epoch will draw from."""
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loader": loader.generator.get_state() if loader.generator is not None else None,
            "transforms": [t.R.get_state() for t in _random_transforms(loader)]}


def restore_rng_states(states: dict, loader) -> None:
    """Put back the generator states saved by rng_states()."""
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    if states["loader"] is not None:
        loader.generator.set_state(states["loader"])
    for transform, state in zip(_random_transforms(loader), states["transforms"]):
        transform.R.set_state(state)


def save_state(path: str | Path, state: dict) -> None:
    """Write the training state atomically: a kill at any moment leaves the previous complete state."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path, expected_fingerprint: str) -> dict | None:
    """Return the saved state when it belongs to this training and is unfinished; None (with the reason logged) otherwise."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are not tensors
    except Exception as err:  # a damaged state is not worth stopping for: train from the start
        log.warning("ignoring unreadable training state %s (%s); starting from epoch 1", path, err)
        return None
    if state.get("fingerprint") != expected_fingerprint:
        log.info("training state %s belongs to another config or data; starting from epoch 1", path)
        return None
    if state.get("finished"):
        return None
    log.info("resuming from %s after epoch %d (best val AUC %.4f at epoch %d)", path, state["epoch"],
             state["best"]["val_auc"], state["best"]["epoch"])
    return state
