"""A site's own processed data: the folder a site process reads, and (for a trial on one machine) its cut from the study's data.

In a real federation every hospital runs deidentify and preprocess itself and points its site process at its own
processed folder. To try a federation on one machine, the train stage cuts the study's processed data into one
folder per site (that site's rows only), and each site process is given only its folder.
"""

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from crossmed.data.processed import DATA_CARD_FILE, IMAGES_FILE, LABELS_FILE, MANIFEST_FILE, ProcessedData, create_image_array
from crossmed.errors import InputError
from crossmed.files import atomic_directory

log = logging.getLogger("crossmed.federated")
CARD_KEYS = ("source", "task", "image_shape", "preprocessing", "subgroups", "leakage_check", "recipe")  # what stays true of a cut


def write_site_folders(processed: str | Path, root: str | Path, sites: tuple[str, ...]) -> dict[str, Path]:
    """Write one processed folder per site under `root` (<root>/<SITE>) holding only that site's rows; return site -> folder."""
    data = ProcessedData.load(processed)
    folders = {}
    for site in sites:
        rows = data.manifest[data.manifest["site"] == site]
        if rows.empty:
            raise InputError(Path(processed) / MANIFEST_FILE, f"no images of site {site}")
        folders[site] = _write_cut(data, rows, Path(root) / site, site)
        log.info("site %s: %d images of %d patients in %s", site, len(rows), rows["patient_id"].nunique(), folders[site])
    return folders


def _write_cut(data: ProcessedData, rows, folder: Path, site: str) -> Path:
    """Write `rows` of `data` as a processed folder of their own (images, labels, manifest renumbered, data card)."""
    index = rows["index"].to_numpy(dtype=np.int64)
    with atomic_directory(folder) as tmp:
        images = create_image_array(tmp, len(index), tuple(data.images.shape[1:]))
        for position, source in enumerate(index):
            images[position] = data.images[source]
        images.flush()
        del images
        np.save(tmp / LABELS_FILE, data.labels[index])
        manifest = rows.copy()
        manifest["index"] = np.arange(len(rows))
        manifest.to_csv(tmp / MANIFEST_FILE, index=False)
        card = {key: data.card[key] for key in CARD_KEYS if key in data.card}
        card.update(images=len(rows), patients=int(rows["patient_id"].nunique()), sites=[site], external_sites=[],
                    cut_from="the study's processed data: this site's rows only")
        (tmp / DATA_CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return folder


def site_summary(data: ProcessedData, folder: str | Path) -> tuple[dict, dict]:
    """Return what a site reports when it joins: image counts per split and class (numbers only), and the facts the
    coordinator needs to build the network and check the sites agree (task, image shape, recipe, and the SHA-256 of
    the manifest and labels, so a resumed federation notices changed data). No identifiers."""
    def positives(labels: np.ndarray) -> int:
        return int((labels[:, 0] > 0).sum()) if labels.ndim == 2 else int((labels > 0).sum())

    train, val = data.split("train"), data.split("val")
    counts = {"train-images": len(train.labels), "val-images": len(val.labels),
              "train-positives": positives(train.labels), "val-positives": positives(val.labels)}
    digest = hashlib.sha256()
    for name in (MANIFEST_FILE, LABELS_FILE):
        digest.update(hashlib.sha256((Path(folder) / name).read_bytes()).hexdigest().encode())
    facts = {"task": data.task.as_dict(), "image_shape": list(data.images.shape[1:]), "recipe": data.card.get("recipe"),
             "preprocessing": data.card.get("preprocessing"), "data_sha256": digest.hexdigest()}
    return counts, facts


def load_site_data(folder: str | Path, site: str) -> ProcessedData:
    """Return a site's processed data; raise InputError naming the file when it is missing, malformed or of another site."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, f"site {site}: no processed data folder here")
    try:
        data = ProcessedData.load(folder)
    except InputError:
        raise
    except Exception as err:  # a truncated .npy or a broken CSV
        raise InputError(folder, f"site {site}: cannot read the processed data ({type(err).__name__}: {err})") from err
    others = sorted(set(data.manifest["site"]) - {site})
    if others:
        raise InputError(folder / MANIFEST_FILE, f"site {site}: holds images of other sites ({', '.join(others)})")
    for split in ("train", "val"):
        if not (data.manifest["split"] == split).any():
            raise InputError(folder / MANIFEST_FILE, f"site {site}: no {split} images")
    for name in (IMAGES_FILE, LABELS_FILE):
        if not (folder / name).is_file():
            raise InputError(folder / name, f"site {site}: missing")
    return data
