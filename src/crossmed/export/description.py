"""The JSON that travels with an exported model: inputs, preprocessing, outputs, classes, operating point."""

from crossmed import __version__
from crossmed.tracking import package_versions


def model_description(name: str, model_file: str, image_size: int, spacing_mm: float, classes: list[str],
                      operating_point: dict, metrics: dict, training: dict, parity: dict) -> dict:
    """Return the description a user needs to feed the exported model and read its output."""
    return {
        "name": name,
        "crossmed_version": __version__,
        "format": "torchscript",
        "file": model_file,
        "inputs": {"image": {"shape": [-1, 1, image_size, image_size], "dtype": "float32", "layout": "NCHW"}},
        "preprocessing": [
            "read the DICOM file and apply the modality LUT (RescaleSlope/RescaleIntercept); invert MONOCHROME1",
            f"resample to {spacing_mm} mm pixel spacing (area averaging)",
            f"centre crop or zero-pad to {image_size} x {image_size}",
            "z-score intensities per image (mean 0, standard deviation 1)",
        ],
        "outputs": {"probabilities": {"shape": [-1, len(classes)], "dtype": "float32", "classes": classes}},
        "classes": classes,
        "operating_point": operating_point,
        "metrics": metrics,
        "training": training,
        "parity": parity,
        "package_versions": package_versions(),
    }
