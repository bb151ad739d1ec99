"""MONAI datasets and loaders reading images lazily from the memory-mapped split, with the configured augmentations."""

from collections.abc import Sequence

import hydra
import numpy as np
import torch
from monai.data import DataLoader, Dataset, set_track_meta
from monai.transforms import Compose, MapTransform, ToTensord
from omegaconf import OmegaConf

from crossmed.errors import ConfigError
from crossmed.training.distributed import Ranks


class ImageItems(Sequence):
    """{'image', 'label'} items over an image sequence and a label array, each read only when asked for."""

    def __init__(self, images, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": np.asarray(self.images[index], dtype=np.float32), "label": self.labels[index]}


class ShardedBatchSampler(torch.utils.data.Sampler):
    """One rank's batches of each epoch's order (a permutation, or a weighted draw with replacement) from seed + epoch.

    Every rank draws the same order and cuts it into global batches of batch_size x world_size; each rank takes
    every world_size-th image of a global batch. So each image is seen once per epoch over all ranks (no padding)
    and every rank takes the same number of steps (a last global batch smaller than world_size joins the one before).
    """

    def __init__(self, count: int, batch_size: int, ranks: Ranks, seed: int, weights: np.ndarray | None = None):
        if count < ranks.world_size:
            raise ConfigError("train.ddp.nproc_per_node", f"{ranks.world_size} processes for {count} training images")
        self.count, self.batch_size, self.ranks, self.seed, self.epoch = count, batch_size, ranks, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = epoch

    def _bounds(self) -> list[int]:
        size = self.batch_size * self.ranks.world_size
        starts = list(range(0, self.count, size))
        if len(starts) > 1 and self.count - starts[-1] < self.ranks.world_size:
            starts.pop()
        return [*starts, self.count]

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.count, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.count, replacement=True, generator=generator)
        bounds = self._bounds()
        for start, stop in zip(bounds[:-1], bounds[1:]):
            yield order[start:stop][self.ranks.rank::self.ranks.world_size].tolist()

    def __len__(self) -> int:
        return len(self._bounds()) - 1


def augmentations(configured) -> list[MapTransform]:
    """Instantiate train.augment: a list of MONAI dictionary transforms (`_target_` and arguments) applied to 'image'."""
    steps = []
    for index, item in enumerate(configured or []):
        key = f"train.augment[{index}]"
        spec = OmegaConf.to_container(item, resolve=True) if OmegaConf.is_config(item) else item
        if not isinstance(spec, dict) or "_target_" not in spec:
            raise ConfigError(key, "each augmentation is a mapping with _target_ (e.g. monai.transforms.RandFlipd) and its arguments")
        try:
            transform = hydra.utils.instantiate(spec)
        except Exception as err:  # hydra wraps import and argument errors in its own exceptions
            raise ConfigError(key, f"cannot build {spec['_target_']}: {err}") from err
        if not isinstance(transform, MapTransform):
            raise ConfigError(key, f"{spec['_target_']} is not a MONAI dictionary transform (use the names ending in 'd')")
        steps.append(transform)
    return steps


def training_transforms(augment, seed: int) -> Compose:
    """Return the training transforms: the configured augmentations, then conversion to tensors, seeded from `seed`."""
    transform = Compose([*augmentations(augment), ToTensord(keys=("image", "label"), track_meta=False)])
    transform.set_random_state(seed=seed)
    return transform


def make_loader(images, labels: np.ndarray, batch_size: int, train: bool, augment, seed: int, num_workers: int = 0,
                pin_memory: bool = False, sample_weights: np.ndarray | None = None, ranks: Ranks = Ranks()) -> DataLoader:
    """Return a MONAI DataLoader yielding {'image': (B, C, *spatial) float, 'label': (B, label_columns) long}.

    Training loaders shuffle (or draw by `sample_weights` with replacement) from the seed; under DDP each rank
    reads batch_size images of each global batch and augments them with its own random stream.
    """
    set_track_meta(False)  # plain tensors: metadata tracking costs more than the transforms at this size
    if train:
        transform = training_transforms(augment, seed + ranks.rank)
    else:
        transform = Compose([ToTensord(keys=("image", "label"), track_meta=False)])
    generator = torch.Generator().manual_seed(seed)
    dataset = Dataset(ImageItems(images, labels), transform)
    if train and ranks.distributed:
        batches = ShardedBatchSampler(len(labels), batch_size, ranks, seed, sample_weights)
        return DataLoader(dataset, batch_sampler=batches, num_workers=num_workers, generator=generator, pin_memory=pin_memory)
    sampler = None
    if train and sample_weights is not None:
        sampler = torch.utils.data.WeightedRandomSampler(sample_weights, len(labels), replacement=True, generator=generator)
    return DataLoader(dataset, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
                      num_workers=num_workers, generator=generator, drop_last=False, pin_memory=pin_memory)
