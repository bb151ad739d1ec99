"""Predict image files with an exported model: one JSON-ready result per image, optional Grad-CAM overlays."""

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from crossmed.data.image_files import image_kind
from crossmed.data.manifest import image_id
from crossmed.errors import CrossmedError, InputError
from crossmed.inference.exported import ExportedModel, decide
from crossmed.inference.image_bytes import BytesAsFile, load_npy, sniff
from crossmed.inference.inputs import KNOWN
from crossmed.inference.phi import PHIError, refuse_phi
from crossmed.data.recipe import Recipe, prepare
from crossmed.limits import PREDICT_LIMITS, check_file_size

log = logging.getLogger("crossmed.predict")
BATCH = 32


def _arrays_of(path: Path, array: np.ndarray, recipe: Recipe) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, image) from an array of one image ([C,] *spatial, or channels last) or a stack (N, [C,] *spatial)."""
    dims, channels = recipe.spatial_dims, recipe.channels
    single = array.ndim == dims or (array.ndim == dims + 1 and (array.shape[0] == channels or
                                                               (channels > 1 and array.shape[-1] == channels)))
    if single:
        yield str(path), array
        return
    for i, image in enumerate(array):
        yield f"{path}[{i}]", image


def prepared_images(model: ExportedModel, paths: list[str | Path], allow_phi: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (name, network input) per image of the files: DICOM, NIfTI, PNG/JPEG, .npy arrays or a MedMNIST .npz."""
    recipe = model.recipe
    for path in map(Path, paths):
        if not path.is_file():
            raise InputError(path, "file not found")
        check_file_size(path, PREDICT_LIMITS)
        if path.suffix == ".npz":
            _check_npz_members(path)
            with np.load(path, allow_pickle=False) as arrays:
                keys = [k for k in arrays.files if k.endswith("_images")] or list(arrays.files)
                for key in keys:
                    for name, image in _arrays_of(Path(f"{path}:{key}"), arrays[key], recipe):
                        yield name, prepare(recipe, image, name)
            continue
        if path.suffix == ".npy":
            for name, image in _arrays_of(path, load_npy(path.read_bytes(), str(path)), recipe):
                yield name, prepare(recipe, image, name)
            continue
        if image_kind(path) is None:
            raise InputError(path, f"unknown image type (known: {KNOWN})")
        if image_kind(path) == "dicom" and not allow_phi:
            refuse_phi(path)
        yield str(path), prepare(recipe, path)


def _check_npz_members(path: Path) -> None:
    """Refuse an .npz whose members would inflate beyond the decoded-size limit (a zip bomb), before reading them."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(member.file_size for member in archive.infolist())
    except zipfile.BadZipFile as err:
        raise InputError(path, f"unreadable .npz ({err})") from err
    if inflated > PREDICT_LIMITS.max_decoded_bytes:
        raise InputError(path, f"arrays inflate to {inflated / 2**20:.0f} MiB, over the "
                               f"{PREDICT_LIMITS.max_decoded_bytes / 2**20:.0f} MiB limit")


def prepared_bytes(model: ExportedModel, data: bytes, name: str, allow_phi: bool = False) -> list[tuple[str, np.ndarray]]:
    """Return (name, network input) per image in file bytes of any supported format (the MLflow model's input)."""
    kind = sniff(data)
    if kind is None:
        raise InputError(name, "bytes are not a DICOM, PNG, JPEG, NIfTI or .npy image")
    if kind == "npy":
        return [(n, prepare(model.recipe, image, n)) for n, image in _arrays_of(Path(name), load_npy(data, name),
                                                                                 model.recipe)]
    with BytesAsFile(data, kind) as path:
        try:  # errors name the upload, never the temporary file of the machine that serves the model
            if kind == "dicom" and not allow_phi:
                refuse_phi(path, shown_as=name)
            return [(name, prepare(model.recipe, path, name))]
        except InputError as err:
            raise InputError(name, err.reason) from None


def predict_prepared(model: ExportedModel, items: Iterator[tuple[str, np.ndarray]]) -> Iterator[tuple[str, np.ndarray, dict]]:
    """Yield (name, network input, result) for prepared images, run in batches."""
    pending: list[tuple[str, np.ndarray]] = []

    def flush():
        probabilities = model.probabilities(np.stack([image for _, image in pending]))
        for (name, image), p in zip(pending, probabilities):
            yield name, image, {"file": name, **decide(model.description, p)}
        pending.clear()

    for item in items:
        pending.append(item)
        if len(pending) == BATCH:
            yield from flush()
    if pending:
        yield from flush()


def predict_files(model: ExportedModel, paths: list[str | Path], saliency_dir: str | Path | None = None,
                  allow_phi: bool = False) -> list[dict]:
    """Return one result per image of `paths`; with `saliency_dir`, also write a Grad-CAM overlay PNG per image.
    Raise the first file's error (predict_each reports each and goes on)."""
    results = []
    for result in predict_each(model, [(Path(p), None) for p in paths], saliency_dir, allow_phi):
        if "error" in result:
            raise PHIError(result["error"]) if result.get("refused") else InputError(result["file"], result["error"])
        results.append(result)
    return results


def predict_each(model: ExportedModel, entries: list[tuple[Path, str | None]], saliency_dir: str | Path | None = None,
                 allow_phi: bool = False) -> Iterator[dict]:
    """Yield, in order, one result per image of the files and one {'file', 'error'} entry (a refused DICOM: also
    'refused': 'phi') per file that cannot be predicted; `entries` as inputs.expand_inputs returns them."""
    saliency = _Saliency(model, Path(saliency_dir)) if saliency_dir else None
    pending: list[tuple[str, np.ndarray | None, dict | None]] = []  # (name, network input, error entry)
    counts = {"images": 0, "failed": 0}

    def flush() -> Iterator[dict]:
        images = [image for _, image, _ in pending if image is not None]
        probabilities = iter(model.probabilities(np.stack(images))) if images else iter(())
        for name, image, error in pending:
            if error is not None:
                yield error
                continue
            result = {"file": name, **decide(model.description, next(probabilities))}
            if saliency is not None:
                result["saliency"] = saliency.write(name, image, result, counts["images"])
            counts["images"] += 1
            if counts["images"] % 100 == 0:
                log.info("predicted %d images", counts["images"])
            yield result
        pending.clear()

    for path, reason in entries:
        try:
            if reason is not None:
                raise InputError(path, reason)
            prepared = list(prepared_images(model, [path], allow_phi))  # a file counts whole: all its images or none
            pending.extend((name, image, None) for name, image in prepared)
        except CrossmedError as err:
            counts["failed"] += 1
            error = {"file": str(path), "error": getattr(err, "reason", None) or str(err)}
            if isinstance(err, PHIError):
                error["refused"] = "phi"
            pending.append((str(path), None, error))
        if sum(image is not None for _, image, _ in pending) >= BATCH:
            yield from flush()
    yield from flush()
    log.info("predicted %d image(s) from %d file(s) with %s (%s); %d file(s) failed", counts["images"], len(entries),
             model.folder, model.runtime, counts["failed"])


class _Saliency:
    """Grad-CAM (MONAI) of the predicted class on the PyTorch network rebuilt from the export, written as overlays."""

    def __init__(self, model: ExportedModel, out_dir: Path):
        from crossmed.model.saliency import grad_cam

        if model.description["task"]["type"] == "multilabel":
            raise InputError(out_dir, "--saliency draws the predicted class of single-label models; this one is multi-label")
        self.net, self.classes, self.out_dir = model.eager_network(), list(model.description["classes"]), out_dir
        # The layer the study validated (its pointing game is in the report); older exports: the last convolutional block.
        self.cam, self.layer = grad_cam(self.net, str(model.description.get("gradcam_layer", "auto")),
                                        tuple(model.description["inputs"]["image"]["shape"][1:]))

    def write(self, name: str, image: np.ndarray, result: dict, number: int) -> str:
        """Write one overlay and return its path."""
        import torch

        from crossmed.model.saliency import overlay_png

        index = self.classes.index(result["predicted"])
        with torch.enable_grad():
            heat = self.cam(torch.as_tensor(image[None]), class_idx=index)[0, 0].detach().numpy()
        self.out_dir.mkdir(parents=True, exist_ok=True)  # only once an image has passed every check
        path = self.out_dir / f"{number:04d}_{image_id(name.split(':')[0].split('[')[0])[:64]}.png"
        overlay_png(image, heat, f"{Path(name).name}\npredicted {result['predicted']} "
                                 f"(P = {result['probabilities'][result['predicted']]:.2f}), Grad-CAM at {self.layer}", path)
        return str(path)
