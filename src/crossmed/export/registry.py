"""Register the exported MLflow model in the Model Registry, tagged with what a reviewer checks first."""

import logging

import mlflow

log = logging.getLogger("crossmed.export")


def registry_tags(description: dict, run_id: str) -> dict[str, str]:
    """Return the model version's tags: headline metrics with intervals, threshold, classes, data hash, run and versions."""
    tags = {"threshold": str(description["operating_point"]["threshold"]),
            "operating_point": str(description["operating_point"]["method"]),
            "classes": ",".join(description["classes"]), "task": description["task"]["type"],
            "data.sha256": description["training"]["data_sha256"],
            "checkpoint.sha256": description["training"]["checkpoint_sha256"], "training_run": run_id,
            "crossmed_version": description["crossmed_version"]}
    for set_name, values in description["metrics"].items():
        for metric in ("auc", "sensitivity", "specificity", "accuracy"):
            if values.get(metric) is not None:
                low, high = values.get(f"{metric}_ci_low"), values.get(f"{metric}_ci_high")
                tags[f"{set_name}.{metric}"] = f"{values[metric]}" + (f" ({low} to {high})" if low is not None else "")
    return tags


def model_version_description(description: dict) -> str:
    """Return the text the Model Registry shows for a version: task, classes, threshold and the headline AUCs."""
    aucs = ", ".join(f"{name} AUC {values['auc']:.3f}" for name, values in description["metrics"].items()
                     if isinstance(values, dict) and values.get("auc") is not None and not name.endswith("_gap"))
    return (f"{description['task']['type']} model ({', '.join(description['classes'])}); operating threshold "
            f"{description['operating_point']['threshold']} ({description['operating_point']['method']}). {aucs}. "
            "The model card is in the training run's artifacts (model/model_card.html).")


def register_model(run_id: str, source: str, name: str, description: dict) -> str:
    """Register `source` (models:/<id> or runs:/<run>/<path>) as a new version of `name` with registry_tags and
    descriptions; return the version."""
    version = mlflow.register_model(source, name, tags=registry_tags(description, run_id))
    client = mlflow.MlflowClient()
    client.update_model_version(name, version.version, description=model_version_description(description))
    if not client.get_registered_model(name).description:
        client.update_registered_model(name, description=f"crossmed study model '{name}': each version is one export "
                                                         "of a training run, tagged with its test metrics, threshold and data hash.")
    log.info("registered MLflow model '%s' version %s", name, version.version)
    return str(version.version)
