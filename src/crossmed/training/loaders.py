"""MONAI datasets and loaders reading images lazily from the memory-mapped split, with flips and rotations for training."""

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import DataLoader, Dataset, set_track_meta
from monai.transforms import Compose, RandFlipd, RandRotate90d, ToTensord


class ImageItems(Sequence):
    """{'image', 'label'} items over an image sequence and a label array, each read only when asked for."""

    def __init__(self, images, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": np.asarray(self.images[index], dtype=np.float32), "label": self.labels[index]}


def training_transforms(augment: bool, seed: int) -> Compose:
    """Return the training transforms: random flips and rotations in the first two spatial axes when `augment`."""
    steps = []
    if augment:
        steps += [RandFlipd(keys="image", prob=0.5, spatial_axis=0), RandFlipd(keys="image", prob=0.5, spatial_axis=1),
                  RandRotate90d(keys="image", prob=0.5, max_k=3)]
    transform = Compose([*steps, ToTensord(keys=("image", "label"), track_meta=False)])
    transform.set_random_state(seed=seed)
    return transform


def make_loader(images, labels: np.ndarray, batch_size: int, train: bool, augment: bool, seed: int,
                num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Return a MONAI DataLoader yielding {'image': (B, C, *spatial) float, 'label': (B, label_columns) long}."""
    set_track_meta(False)  # plain tensors: metadata tracking costs more than the transforms at this size
    transform = training_transforms(augment and train, seed) if train else Compose([ToTensord(keys=("image", "label"), track_meta=False)])
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(Dataset(ImageItems(images, labels), transform), batch_size=batch_size, shuffle=train,
                      num_workers=num_workers, generator=generator, drop_last=False, pin_memory=pin_memory)
