"""The JSON that travels with an exported model: files, inputs, preprocessing recipe, outputs, classes, operating point."""

from crossmed import __version__
from crossmed.tracking import package_versions


def model_description(name: str, files: dict[str, str], recipe: dict, input_shape: list[int], preprocessing: list[str],
                      task: dict, operating_point: dict, metrics: dict, training: dict, parity: dict) -> dict:
    """Return the description a user needs to feed the exported model and read its output."""
    classes = list(task["classes"])
    layout = "NCHW" if len(input_shape) == 3 else "NCDHW"
    activation = "sigmoid per label" if task["type"] == "multilabel" else "softmax"
    return {
        "name": name,
        "crossmed_version": __version__,
        "files": files,
        "inputs": {"image": {"shape": [-1, *input_shape], "dtype": "float32", "layout": layout}},
        "preprocessing": preprocessing,
        "recipe": recipe,
        "outputs": {"probabilities": {"shape": [-1, len(classes)], "dtype": "float32", "classes": classes,
                                      "activation": activation}},
        "task": task,
        "classes": classes,
        "operating_point": operating_point,
        "metrics": metrics,
        "training": training,
        "parity": parity,
        "package_versions": package_versions(),
    }
