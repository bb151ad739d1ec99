"""MedMNIST v2 `.npz` files: what each subset holds, a reader that refuses a file not matching its subset, and the
official download (checked against its published MD5)."""

import hashlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossmed.errors import ConfigError, InputError
from crossmed.files import atomic_path

log = logging.getLogger("crossmed.fetch")
SPLITS = ("train", "val", "test")
SIZES_2D, SIZES_3D = (28, 64, 128, 224), (28, 64)


@dataclass(frozen=True)
class Subset:
    """One MedMNIST v2 subset as the `medmnist` package describes it (INFO), with the published MD5 per size."""

    name: str
    task: str  # binary-class | multi-class | multi-label, binary-class | ordinal-regression
    classes: tuple[str, ...]  # class names, or the label of each column for multi-label
    channels: int
    spatial_dims: int
    md5: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def n_labels(self) -> int:
        """Return the number of classes (label columns for multi-label)."""
        return len(self.classes)

    @property
    def label_columns(self) -> int:
        """Return how many label columns the file holds per image."""
        return self.n_labels if self.task.startswith("multi-label") else 1

    @property
    def task_type(self) -> str:
        """Return crossmed's name of the task: binary, multiclass, multilabel or ordinal."""
        return {"binary-class": "binary", "multi-class": "multiclass", "multi-label, binary-class": "multilabel",
                "ordinal-regression": "ordinal"}[self.task]


_ORGANS = ("bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right", "liver", "lung-left",
           "lung-right", "pancreas", "spleen")
SUBSETS = {s.name: s for s in [
    Subset("pathmnist", "multi-class", ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
                                        "normal colon mucosa", "cancer-associated stroma",
                                        "colorectal adenocarcinoma epithelium"), 3, 2,
           {28: "a8b06965200029087d5bd730944a56c1", 64: "55aa9c1e0525abe5a6b9d8343a507616",
            128: "ac42d08fb904d92c244187169d1fd1d9", 224: "2c51a510bcdc9cf8ddb2af93af1eadec"}),
    Subset("chestmnist", "multi-label, binary-class", ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass",
                                                       "nodule", "pneumonia", "pneumothorax", "consolidation", "edema",
                                                       "emphysema", "fibrosis", "pleural", "hernia"), 1, 2,
           {28: "02c8a6516a18b556561a56cbdd36c4a8", 64: "9de6cd0b934ebb5b7426cfba5efbae16",
            128: "db107e5590b27930b62dbaf558aebee3", 224: "45bd33e6f06c3e8cdb481c74a89152aa"}),
    Subset("dermamnist", "multi-class", ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
                                         "benign keratosis-like lesions", "dermatofibroma", "melanoma",
                                         "melanocytic nevi", "vascular lesions"), 3, 2,
           {28: "0744692d530f8e62ec473284d019b0c7", 64: "b70a2f5635c6199aeaa28c31d7202e1f",
            128: "2defd784463fa5243564e855ed717de1", 224: "8974907d8e169bef5f5b96bc506ae45d"}),
    Subset("octmnist", "multi-class", ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"), 1, 2,
           {28: "c68d92d5b585d8d81f7112f81e2d0842", 64: "e229e9440236b774d9f0dfef9d07bdaf",
            128: "0a97e76651ace45c5d943ee3f65b63ae", 224: "abc493b6d529d5de7569faaef2773ba3"}),
    Subset("pneumoniamnist", "binary-class", ("normal", "pneumonia"), 1, 2,
           {28: "28209eda62fecd6e6a2d98b1501bb15f", 64: "8f4eceb4ccffa70c672198ea285246c6",
            128: "05b46931834c231683c68f40c47b2971", 224: "d6a3c71de1b945ea11211b03746c1fe1"}),
    Subset("retinamnist", "ordinal-regression", ("0", "1", "2", "3", "4"), 3, 2,
           {28: "bd4c0672f1bba3e3a89f0e4e876791e4", 64: "afda852cc34dcda56f86ad2b2457dbcc",
            128: "e48e916a24454daf90583d4e6efb1a18", 224: "eae7e3b6f3fcbda4ae613ebdcbe35348"}),
    Subset("breastmnist", "binary-class", ("malignant", "normal, benign"), 1, 2,
           {28: "750601b1f35ba3300ea97c75c52ff8f6", 64: "742edef2a1fd1524b2efff4bd7ba9364",
            128: "363e4b3f8d712e9b5de15470a2aaadf1", 224: "b56378a6eefa9fed602bb16d192d4c8b"}),
    Subset("bloodmnist", "multi-class", ("basophil", "eosinophil", "erythroblast", "immature granulocytes", "lymphocyte",
                                         "monocyte", "neutrophil", "platelet"), 3, 2,
           {28: "7053d0359d879ad8a5505303e11de1dc", 64: "2b94928a2ae4916078ca51e05b6b800b",
            128: "adace1e0ed228fccda1f39692059dd4c", 224: "b718ff6835fcbdb22ba9eacccd7b2601"}),
    Subset("tissuemnist", "multi-class", ("collecting duct, connecting tubule", "distal convoluted tubule",
                                          "glomerular endothelial cells", "interstitial endothelial cells", "leukocytes",
                                          "podocytes", "proximal tubule segments", "thick ascending limb"), 1, 2,
           {28: "ebe78ee8b05294063de985d821c1c34b", 64: "123ece2eba09d0aa5d698fda57103344",
            128: "61b955355d7425a89687b06cca3ce0c2", 224: "b077128c4a949f0a4eb01517f9037b9c"}),
    Subset("organamnist", "multi-class", _ORGANS, 1, 2,
           {28: "68e3f8846a6bd62f0c9bf841c0d9eacc", 64: "2dcccc29b88e6da5a01161ef20cda288",
            128: "eeae80d0a227a8d099027e1b3cfd3b60", 224: "50747347e05c87dd3aaf92c49f9f3170"}),
    Subset("organcmnist", "multi-class", _ORGANS, 1, 2,
           {28: "b9ceb9546e10131b32923c5bbeaea2b1", 64: "3ce34a8724ea6f548e6db4744d03b6a9",
            128: "773c1f009daa3fe5d9a2a201b2a7ed94", 224: "050f5e875dc056f6768abf94ec9995d1"}),
    Subset("organsmnist", "multi-class", _ORGANS, 1, 2,
           {28: "9ab87b696fb54e2a387ebe992d6ed5f1", 64: "53a6d115339d874c25e309a994ff46d3",
            128: "ded0c5fa01a95dc4978b956f613e9b8e", 224: "b354719e553fbbb2513d5533f52a4cb1"}),
    Subset("organmnist3d", "multi-class", ("liver", "kidney-right", "kidney-left", "femur-right", "femur-left",
                                           "bladder", "heart", "lung-right", "lung-left", "spleen", "pancreas"), 1, 3,
           {28: "a0c5a1ff56af4f155c46d46fbb45a2fe", 64: "58a2205adf14a9d0a189cb06dc78bf10"}),
    Subset("nodulemnist3d", "binary-class", ("benign", "malignant"), 1, 3,
           {28: "8755a7e9e05a4d9ce80a24c3e7a256f3", 64: "c47c5b7d457bf6332200d2ea6d64ecd8"}),
    Subset("adrenalmnist3d", "binary-class", ("normal", "hyperplasia"), 1, 3,
           {28: "bbd3c5a5576322bc4cdfea780653b1ce", 64: "17721accfe9fb005146a47d33bc54b2f"}),
    Subset("fracturemnist3d", "multi-class", ("buckle rib fracture", "nondisplaced rib fracture",
                                              "displaced rib fracture"), 1, 3,
           {28: "6aa7b0143a6b42da40027a9dda61302f", 64: "f01d7e6316aedf4210da0da5b7437b42"}),
    Subset("vesselmnist3d", "binary-class", ("vessel", "aneurysm"), 1, 3,
           {28: "b41fd4f7e7e2feedddb201585ecafa1b", 64: "6bb274a8846e1097066dcd64e2c4520f"}),
    Subset("synapsemnist3d", "binary-class", ("inhibitory synapse", "excitatory synapse"), 1, 3,
           {28: "1235b78a3cd6280881dd7850a78eadb6", 64: "43bd14ebf3af9d3dd072446fedc14d5e"}),
]}


def subset_info(name: str) -> Subset:
    """Return the subset called `name`; raise ConfigError listing the known ones otherwise."""
    if name not in SUBSETS:
        raise ConfigError("data.subset", f"unknown MedMNIST subset '{name}' (known: {', '.join(sorted(SUBSETS))})")
    return SUBSETS[name]


def official_url(name: str, size: int) -> str:
    """Return the Zenodo address of the official file of a subset and size."""
    return f"https://zenodo.org/records/10519652/files/{official_file_name(name, size)}?download=1"


def file_md5(path: str | Path) -> str:
    """Return the MD5 of a file, read in 1 MiB blocks."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def official_file_name(name: str, size: int) -> str:
    """Return the file name the MedMNIST package uses for a subset and size (e.g. breastmnist_64.npz)."""
    subset = subset_info(name)
    sizes = SIZES_3D if subset.spatial_dims == 3 else SIZES_2D
    if size not in sizes:
        raise ConfigError("data.size", f"{name} comes in sizes {list(sizes)}, not {size}")
    return f"{name}.npz" if size == 28 else f"{name}_{size}.npz"


@dataclass
class MedMNISTSplits:
    """Images as (N, C, *spatial) uint8 and labels as (N, label_columns) per official split."""

    subset: Subset
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    @property
    def size(self) -> int:
        """Return the edge length of the images in pixels."""
        return int(self.images["train"].shape[-1])


def _check_images(path: Path, split: str, images: np.ndarray, subset: Subset) -> np.ndarray:
    """Return images as (N, C, *spatial), or raise InputError saying how their shape differs from the subset's."""
    spatial = subset.spatial_dims
    if subset.channels == 1 and images.ndim == 1 + spatial:
        images = images[:, None]
    elif subset.channels > 1 and images.ndim == 2 + spatial and images.shape[-1] == subset.channels:
        images = np.moveaxis(images, -1, 1)
    else:
        expected = f"(N, {', '.join(['S'] * spatial)}{', ' + str(subset.channels) if subset.channels > 1 else ''})"
        raise InputError(path, f"{split}_images has shape {images.shape}; {subset.name} needs {expected}")
    edges = set(images.shape[2:])
    allowed = SIZES_3D if spatial == 3 else SIZES_2D
    if len(edges) != 1 or edges.pop() not in allowed:
        raise InputError(path, f"{split}_images has spatial shape {images.shape[2:]}; {subset.name} comes in sizes {list(allowed)}")
    return images


def _check_labels(path: Path, split: str, labels: np.ndarray, subset: Subset, n_images: int) -> np.ndarray:
    """Return labels as (N, label_columns) int64, or raise InputError saying what is out of range."""
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.shape != (n_images, subset.label_columns):
        raise InputError(path, f"{split}_labels has shape {labels.shape}; expected ({n_images}, {subset.label_columns})")
    top = 1 if subset.task.startswith("multi-label") else subset.n_labels - 1
    if labels.size and (labels.min() < 0 or labels.max() > top):
        raise InputError(path, f"{split}_labels range {int(labels.min())}..{int(labels.max())} is outside 0..{top} "
                               f"of {subset.name} ({subset.task})")
    return labels.astype(np.int64)


def load_medmnist(path: str | Path, subset_name: str, size: int | None = None) -> MedMNISTSplits:
    """Return the official splits of a MedMNIST `.npz` file after checking it against its subset (and size)."""
    subset = subset_info(subset_name)
    path = Path(path)
    if not path.is_file():
        wanted = size or 28
        raise InputError(path, f"not found (this machine fetches nothing); download {official_file_name(subset_name, wanted)} "
                               f"from {official_url(subset_name, wanted)} and save it as {path}, or pass "
                               "-S data.path=FILE")
    try:
        archive = np.load(path)
    except (OSError, ValueError) as err:
        raise InputError(path, f"not a readable .npz file ({err})") from err
    with archive:
        expected = {f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")}
        missing = sorted(expected - set(archive.files))
        if missing:
            raise InputError(path, f"missing arrays {missing} (has {sorted(archive.files)}); is this a MedMNIST file?")
        images, labels = {}, {}
        for split in SPLITS:
            images[split] = _check_images(path, split, archive[f"{split}_images"], subset)
            labels[split] = _check_labels(path, split, archive[f"{split}_labels"], subset, len(images[split]))
    sizes = {split: images[split].shape[2:] for split in SPLITS}
    if len(set(sizes.values())) != 1:
        raise InputError(path, f"splits differ in image size: {sizes}")
    if size is not None and images["train"].shape[-1] != size:
        raise InputError(path, f"holds {images['train'].shape[-1]} px images but data.size is {size}")
    return MedMNISTSplits(subset, images, labels)


FETCH_CHUNK = 1 << 20


def fetch_medmnist(subset: str, size: int, target: str | Path, url: str | None = None, timeout: float = 30.0) -> Path:
    """Download the official file of `subset` at `size` to `target` (atomically), refusing it unless its MD5 matches."""
    info, target = subset_info(subset), Path(target)
    published = info.md5.get(size)
    if published is None:
        official_file_name(subset, size)  # raises ConfigError naming the sizes the subset comes in
    url = url or official_url(subset, size)
    log.info("fetching %s (%s at %d px) to %s", url, subset, size, target)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, atomic_path(target) as tmp:
            total, done = int(response.headers.get("Content-Length") or 0), 0
            with open(tmp, "wb") as fh:
                for block in iter(lambda: response.read(FETCH_CHUNK), b""):
                    fh.write(block)
                    done += len(block)
                    if total and done % (64 * FETCH_CHUNK) < FETCH_CHUNK:
                        log.info("%s: %d of %d MiB", target.name, done >> 20, total >> 20)
            md5 = file_md5(tmp)
            if md5 != published:
                raise InputError(url, f"MD5 {md5} differs from the published {published}; nothing was written")
    except (urllib.error.URLError, OSError) as err:
        raise InputError(target, f"not found and could not be fetched ({err}); download {official_file_name(subset, size)} "
                                 f"from {official_url(subset, size)} and save it as {target}, or pass -S data.path=FILE") from err
    log.info("wrote %s (MD5 %s, as published)", target, published)
    return target
