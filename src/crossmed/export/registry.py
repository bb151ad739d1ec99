"""Register the exported MLflow model in the Model Registry, tagged with what a reviewer checks first."""

import logging

import mlflow

log = logging.getLogger("crossmed.export")


def registry_tags(description: dict, run_id: str) -> dict[str, str]:
    """Return the model version's tags: headline metrics with intervals, threshold, classes, data hash, run and versions."""
    tags = {"crossmed.threshold": str(description["operating_point"]["threshold"]),
            "crossmed.operating_point": str(description["operating_point"]["method"]),
            "crossmed.classes": ",".join(description["classes"]), "crossmed.task": description["task"]["type"],
            "crossmed.data_sha256": description["training"]["data_sha256"],
            "crossmed.checkpoint_sha256": description["training"]["checkpoint_sha256"], "crossmed.training_run": run_id,
            "crossmed.version": description["crossmed_version"]}
    for set_name, values in description["metrics"].items():
        for metric in ("auc", "sensitivity", "specificity", "accuracy"):
            if values.get(metric) is not None:
                low, high = values.get(f"{metric}_ci_low"), values.get(f"{metric}_ci_high")
                tags[f"metrics.{set_name}.{metric}"] = f"{values[metric]}" + (f" ({low} to {high})" if low is not None else "")
    return tags


def register_model(run_id: str, artifact_path: str, name: str, description: dict) -> str:
    """Register runs:/<run>/<artifact_path> as a new version of `name` with registry_tags; return the version."""
    version = mlflow.register_model(f"runs:/{run_id}/{artifact_path}", name, tags=registry_tags(description, run_id))
    log.info("registered MLflow model '%s' version %s", name, version.version)
    return str(version.version)
