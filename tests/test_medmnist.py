"""MedMNIST `.npz` reading: every task type in 2D and 3D, and files that do not match their subset."""

from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from crossmed.sources.medmnist_files import SUBSETS, load_medmnist, official_file_name
from crossmed.errors import ConfigError, InputError


def write_npz(path: Path, subset: str, size: int = 28, n: int = 6, **replace) -> Path:
    """Write a tiny file shaped like the official one of `subset`."""
    info = SUBSETS[subset]
    rng = np.random.default_rng(0)
    spatial = (size,) * info.spatial_dims
    shape = (n, *spatial, info.channels) if info.channels > 1 else (n, *spatial)
    top = 2 if info.task.startswith("multi-label") else info.n_labels
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, top, (n, info.label_columns), dtype=np.uint8)
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("subset,channels,columns,dims", [
    ("breastmnist", 1, 1, 2), ("pathmnist", 3, 1, 2), ("chestmnist", 1, 14, 2), ("retinamnist", 3, 1, 2),
    ("nodulemnist3d", 1, 1, 3), ("organmnist3d", 1, 1, 3)])
def test_each_task_type_loads_channels_first(tmp_path, subset, channels, columns, dims):
    data = load_medmnist(write_npz(tmp_path / "f.npz", subset), subset)
    assert data.images["train"].shape == (6, channels, *(28,) * dims)
    assert data.labels["test"].shape == (6, columns) and data.labels["test"].dtype == np.int64
    assert data.size == 28


def test_file_not_matching_its_subset_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"missing arrays \['val_labels'\]"):
        load_medmnist(write_npz(tmp_path / "a.npz", "breastmnist", val_labels=None), "breastmnist")
    with pytest.raises(InputError, match=r"test_labels range 3\.\.3 is outside 0\.\.1"):
        load_medmnist(write_npz(tmp_path / "b.npz", "breastmnist", test_labels=np.full((6, 1), 3, np.uint8)), "breastmnist")
    with pytest.raises(InputError, match="pathmnist needs"):
        load_medmnist(write_npz(tmp_path / "c.npz", "breastmnist"), "pathmnist")  # grey file, RGB subset
    with pytest.raises(InputError, match="comes in sizes"):
        load_medmnist(write_npz(tmp_path / "d.npz", "breastmnist", size=30), "breastmnist")
    with pytest.raises(InputError, match="zenodo"):
        load_medmnist(tmp_path / "absent.npz", "breastmnist")
    (tmp_path / "e.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_medmnist(tmp_path / "e.npz", "breastmnist")
    with pytest.raises(ConfigError, match="data.subset"):
        load_medmnist(tmp_path / "a.npz", "mnist")


def test_official_file_names():
    assert official_file_name("breastmnist", 28) == "breastmnist.npz"
    assert official_file_name("organmnist3d", 64) == "organmnist3d_64.npz"
    with pytest.raises(ConfigError, match="data.size"):
        official_file_name("organmnist3d", 128)


@pytest.mark.skipif(not (SHARED / "data" / "breastmnist.npz").is_file(), reason="../shared/data/breastmnist.npz absent")
def test_real_breastmnist_file():
    data = load_medmnist(SHARED / "data" / "breastmnist.npz", "breastmnist")
    assert {s: len(v) for s, v in data.images.items()} == {"train": 546, "val": 78, "test": 156}
    assert int((data.labels["test"] == 0).sum()) == 42
