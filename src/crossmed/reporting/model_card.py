"""The model card (Markdown and self-contained HTML) that travels with an export: use, data, evaluation, limits, versions."""

from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from crossmed.files import write_text_atomic
from crossmed.reporting.documents import html_document, markdown_table, read_json
from crossmed.reporting.sections import calibration_section, data_section, groups_section, limitations, metric_name, with_ci

HEADLINE = ("auc", "sensitivity", "specificity", "ppv", "npv", "accuracy", "balanced_accuracy", "brier")


def _evaluation_rows(metrics: dict) -> list[list]:
    """Return one row per headline metric with its interval in each test set."""
    sets = [name for name in metrics if name != "external_gap"]
    keys = [k for k in HEADLINE if any(k in metrics[s] for s in sets)]
    return [[metric_name(key), *[with_ci({"value": metrics[s].get(key), "ci_low": metrics[s].get(f"{key}_ci_low"),
                             "ci_high": metrics[s].get(f"{key}_ci_high")}) if metrics[s].get(f"{key}_ci_low") is not None
                    else metrics[s].get(key, "") for s in sets]] for key in keys]


def _trained_at(training: dict) -> str:
    """Return which weights were exported: the epoch, or the round of a federated training and its sites."""
    federated = training.get("federated")
    if not federated:
        return f"epoch {training['epoch']}"
    dp = federated.get("differential_privacy")
    privacy = (f", with site-level differential privacy: epsilon {dp['epsilon']:.2f} at delta {dp['delta']:g} over "
               f"{dp['releases']} released rounds (noise multiplier {dp['noise_multiplier']}, clipping norm {dp['clipping_norm']})"
               if dp else "")
    if federated.get("secure_aggregation"):
        privacy += f", by secure aggregation ({federated['secure_aggregation']}: the coordinator saw only the sum of the updates)"
    return (f"round {federated['best_round']} of {federated['rounds']} (epoch {training['epoch']}) of federated training "
            f"({federated['aggregation']}) across sites {', '.join(federated['sites'])}, whose images never left them{privacy}")


def model_card_markdown(cfg: DictConfig, description: dict, evaluation: Path, card_path: Path) -> str:
    """Return the model card as Markdown, from the model description, the evaluation folder and the data card."""
    card, use = read_json(card_path), cfg.export.card
    metrics, operating = description["metrics"], description["operating_point"]
    groups = pd.read_csv(evaluation / "metrics_by_group.csv")
    calibration = read_json(evaluation / "calibration.json")
    sets = [name for name in metrics if name != "external_gap"]
    training, recipe = description["training"], description["recipe"]
    threshold = (f"threshold **{operating['threshold']:.4f}** on P({description['classes'][1]}) chosen by {operating['method']}"
                 f" on {operating['val_images']} validation images" if description["task"]["type"] == "binary"
                 else operating["method"])
    lines = [f"# Model card: {description['name']}", "",
             f"{description['task']['type'].capitalize()} classifier of {cfg.study.task} "
             f"({', '.join(description['classes'])}). Exported by crossmed {description['crossmed_version']} from the checkpoint "
             f"of {_trained_at(training)} with SHA-256 `{training['checkpoint_sha256'][:16]}…`; its MLflow training run carries "
             f"this value in the tag `checkpoint.sha256`.", "",
             "## Intended use", "", str(use.intended_use).strip(), "",
             "Intended users: " + "; ".join(use.intended_users) + ".", "",
             "## Not intended for", "", *[f"- {item}" for item in use.not_intended], "",
             "## Inputs and outputs", "",
             f"Input: {recipe['channels']} channel(s), {recipe['spatial_dims']}D, prepared to "
             f"{' x '.join([str(recipe['image_size'])] * recipe['spatial_dims'])} by the recipe in model.json "
             f"({recipe['kind']}; its steps are listed under Data); files: DICOM (de-identified only), NIfTI, PNG/JPEG, or "
             "arrays of raw pixels.", "",
             f"Output: {description['outputs']['probabilities']['activation']} probabilities for "
             f"{', '.join(description['classes'])}; decision: {threshold}.", "",
             *data_section(card, cfg),
             "## Evaluation", "", "Values with 95% intervals from bootstrap resamples of patients; the operating point was fixed "
             "on validation before the test sets were seen.", "",
             *markdown_table(["metric", *sets], _evaluation_rows(metrics)),
             *calibration_section(calibration)[:-2], "The exported model returns the probabilities before temperature "
             "scaling; the operating point was chosen on those.", "", *groups_section(groups, description["task"]["type"]),
             *limitations(cfg, card, groups, operating),
             "## Versions", "",
             *markdown_table(["what", "version"], [["processed data (SHA-256)", f"`{training['data_sha256']}`"],
                                                   ["checkpoint (SHA-256)", f"`{training['checkpoint_sha256']}`"],
                                                   ["training arithmetic (reproducibility.cpu)", str(training.get("arithmetic", "unknown"))],
                                                   ["network", f"`{training['network']['_target_']}`"],
                                                   *[[k, v] for k, v in description["package_versions"].items()]]),
             "Parity of the exported files with the PyTorch model (largest probability difference; the exact figures are in the MLflow run): " + "; ".join(
                 f"{runtime} within {p['tolerance']:.0e} on {p['images']} images"
                 for runtime, p in description["parity"].items()) + ".", ""]
    return "\n".join(lines).replace("](../evaluation/", "](")


def write_model_card(cfg: DictConfig, description: dict, evaluation: Path, card_path: Path, path: Path) -> tuple[Path, Path]:
    """Write model_card.md and model_card.html beside it; return both paths."""
    text = model_card_markdown(cfg, description, evaluation, card_path)
    write_text_atomic(path, text)
    html_path = path.with_suffix(".html")
    write_text_atomic(html_path, html_document(text, f"Model card: {description['name']}", path.parent))
    return path, html_path

