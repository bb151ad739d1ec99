"""MONAI datasets and loaders over in-memory image arrays, with flips and 90-degree rotations for training."""

import numpy as np
import torch
from monai.data import DataLoader, Dataset, set_track_meta
from monai.transforms import Compose, RandFlipd, RandRotate90d, ToTensord


def training_transforms(augment: bool, seed: int) -> Compose:
    """Return the training transforms: random flips and rotations when `augment`, then tensors."""
    steps = []
    if augment:
        steps += [RandFlipd(keys="image", prob=0.5, spatial_axis=0), RandFlipd(keys="image", prob=0.5, spatial_axis=1),
                  RandRotate90d(keys="image", prob=0.5, max_k=3)]
    transform = Compose([*steps, ToTensord(keys=("image", "label"), track_meta=False)])
    transform.set_random_state(seed=seed)
    return transform


def make_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, train: bool, augment: bool, seed: int,
                num_workers: int = 0) -> DataLoader:
    """Return a MONAI DataLoader yielding {'image': (B,1,H,W) float, 'label': (B,) long}."""
    set_track_meta(False)  # plain tensors: metadata tracking costs more than the transforms at this size
    items = [{"image": image, "label": np.int64(label)} for image, label in zip(images, labels)]
    transform = training_transforms(augment and train, seed) if train else Compose([ToTensord(keys=("image", "label"), track_meta=False)])
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(Dataset(items, transform), batch_size=batch_size, shuffle=train, num_workers=num_workers,
                      generator=generator, drop_last=False)
