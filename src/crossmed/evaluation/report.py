"""The validation report: one Markdown file and a self-contained HTML twin, laid out along TRIPOD+AI and CLAIM.

Everything comes from files the earlier stages wrote (data card, training history, evaluation folder,
metrics.json) and the composed config; nothing is recomputed, so the report states exactly what was measured.
"""

import base64
import json
import os
import re
from pathlib import Path

import markdown
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from crossmed import __version__
from crossmed.data.card import SOURCE_FORMATS, leakage_sentence
from crossmed.errors import InputError
from crossmed.files import write_text_atomic
from crossmed.shareable_config import shareable

METRIC_NAMES = {"auc": "ROC AUC", "pr_auc": "PR AUC (average precision)", "accuracy": "Accuracy",
                "balanced_accuracy": "Balanced accuracy", "sensitivity": "Sensitivity", "specificity": "Specificity",
                "ppv": "PPV", "npv": "NPV", "f1": "F1", "brier": "Brier score", "mean_absolute_error": "Mean absolute error (grades)"}
HEADLINE = {"binary": ("auc", "sensitivity", "specificity"), "multilabel": ("auc", "accuracy")}
HEADLINE_OTHER = ("auc", "accuracy", "balanced_accuracy")
# Where the report answers the evaluation topics of TRIPOD+AI (BMJ 2024) and CLAIM (2024 update). Item numbers are
# left to the study team: map them from the official checklists, which this project does not redistribute.
CHECKLIST = [("Data sources, setting, participants and sites", "Data"),
             ("Data preparation: de-identification and preprocessing", "Data"),
             ("Data partitions and leakage between them", "Data"),
             ("Model: architecture, training, selection of the final weights", "Model and training"),
             ("Decision threshold and how it was chosen", "Model and training"),
             ("Performance measures with their uncertainty", "Performance"),
             ("External validation", "External validation"),
             ("Calibration", "Calibration"),
             ("Performance in subgroups and sites (fairness)", "Sites and subgroups"),
             ("Explainability of the model's outputs", "Explainability"),
             ("Limitations", "Limitations")]


def read_json(path: Path) -> dict:
    """Return a JSON file an earlier stage wrote; raise InputError naming it when missing."""
    if not path.is_file():
        raise InputError(path, "missing: run the evaluate stage first")
    return json.loads(path.read_text())


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """Return a Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows] + [""]


UNRELIABLE_NOTE = ("† marks an interval that should not be relied on: too few cases of some class, or every resample "
                   "agreeing (a zero-width interval).")


def with_ci(result: dict) -> str:
    """Return 'value (low to high)', with † when the interval is marked unreliable, or 'undefined'."""
    if result.get("value") is None or pd.isna(result.get("value")):
        return "undefined"
    mark = "" if bool(result.get("reliable", True)) else " †"
    return f"{result['value']:.3f} ({result['ci_low']:.3f} to {result['ci_high']:.3f}){mark}"


def data_section(card: dict, cfg: DictConfig) -> list[str]:
    """Return the data section: source, sites, de-identification, splits by site and the preprocessing steps."""
    rows = []
    for split, parts in card["splits"].items():
        for site, summary in parts["sites"].items():
            rows.append([split, site, summary["images"], summary["patients"],
                         ", ".join(f"{k} {v}" for k, v in summary["labels"].items())])
    leakage = card["leakage_check"]
    return ["## Data", "",
            f"Source: **{cfg.data.source}** ({SOURCE_FORMATS.get(card['source']['type'], card['source']['type'])}); "
            f"sites {', '.join(card['sites'])}; external (held-out) sites: "
            f"{', '.join(card['external_sites']) or 'none'}. {card['images']} images of {card['patients']} patients. "
            f"Task: {card['task']['type']} ({', '.join(card['task']['classes'])}).", "",
            f"De-identification: DICOM PS3.15 Basic Profile with options {', '.join(cfg.deid.get('options', [])) or 'none'}, "
            "per-site keyed pseudonyms, run on site before data leave the hospital.", "",
            "Splits are by patient (no patient in two splits). " + leakage_sentence(leakage), "",
            *markdown_table(["split", "site", "images", "patients", "labels"], rows),
            "Preprocessing: " + "; ".join(card["preprocessing"]) + ".", ""]


def _arithmetic_line(evaluation: Path) -> str:
    """Return the sentence saying how training and evaluation computed and what that promises (reproducibility.json)."""
    path = evaluation / "reproducibility.json"
    if not path.is_file():
        return ""
    facts = json.loads(path.read_text())
    return (f" Arithmetic: training {facts['training']}, evaluation {facts['evaluation']} "
            f"(`reproducibility.cpu`); the weights are {facts['scope']}.")


def _model_section(cfg: DictConfig, history: pd.DataFrame, operating: dict, evaluation: Path) -> list[str]:
    train = cfg.train
    best = history.loc[history["val_auc"].idxmax()]
    return ["## Model and training", "",
            f"Network **{cfg.model.name}** (`{cfg.model.net._target_}`), trained from scratch with {train.optimizer} "
            f"(learning rate {train.learning_rate}, weight decay {train.weight_decay}, {train.schedule} schedule), batch "
            f"{train.batch_size}, up to {train.max_epochs} epochs, seed {cfg.seed}, deterministic {train.deterministic}. "
            f"Trained {len(history)} epochs; the weights used are those of epoch {int(best['epoch'])} "
            f"(best validation AUC {best['val_auc']:.4f}).{_arithmetic_line(evaluation)}", "",
            f"Operating point: threshold **{operating['threshold']:.4f}** by {operating['method']}"
            + (f" (target {operating['target']})" if "target" in operating else "")
            + f", chosen on the validation split ({operating['val_images']} images) and applied unchanged to every test set.", ""]


def metric_name(key: str) -> str:
    """Return a metric's readable name (per-class AUCs as 'ROC AUC, <class>')."""
    return METRIC_NAMES.get(key) or (f"ROC AUC, {key[4:]}" if key.startswith("auc_") else key)


def _performance_section(bootstrap: dict, binary: bool) -> list[str]:
    sets = list(bootstrap["sets"])
    keys = list(dict.fromkeys(k for values in bootstrap["sets"].values() for k in values))
    rows = [[metric_name(m), *[with_ci(bootstrap["sets"][s][m]) if m in bootstrap["sets"][s] else "" for s in sets]]
            for m in keys]
    return ["## Performance", "",
            f"Values with {bootstrap['confidence']:.0%} intervals from {bootstrap['resamples']} bootstrap resamples of "
            f"**patients** (seed {bootstrap['seed']}). {UNRELIABLE_NOTE}", "", *markdown_table(["metric", *sets], rows),
            *(["![ROC](../evaluation/roc.png) ![Precision-recall](../evaluation/pr.png)", ""] if binary else [])]


def confusion_counts_section(evaluation: Path, operating: dict) -> list[str]:
    """Return the 2 x 2 table at the operating point of each binary test set (from predictions_<set>.csv), or nothing."""
    rows = []
    for path in sorted(evaluation.glob("predictions_*.csv")):
        table = pd.read_csv(path)
        if not {"actual", "predicted", "probability"} <= set(table.columns):
            return []  # not a binary task
        actual, predicted = table["actual"].astype(int), table["predicted"].astype(int)
        rows.append([path.stem.removeprefix("predictions_").replace("_", " "), int(((actual == 1) & (predicted == 1)).sum()),
                     int(((actual == 0) & (predicted == 1)).sum()), int(((actual == 1) & (predicted == 0)).sum()),
                     int(((actual == 0) & (predicted == 0)).sum()), len(table)])
    if not rows:
        return []
    return [f"Counts at the operating point (threshold {operating['threshold']:.4f}, chosen on validation):", "",
            *markdown_table(["set", "true positive", "false positive", "false negative", "true negative", "images"], rows)]


def _gap_section(metrics: dict) -> list[str]:
    gap = metrics.get("external_gap")
    if not gap:
        return ["## External validation", "", "No external test set in this study.", ""]
    rows = [[metric_name(m), f"{gap[m]:+.3f} ({gap[m + '_ci_low']:+.3f} to {gap[m + '_ci_high']:+.3f})"]
            for m in gap if "_ci_" not in m and gap[m] is not None]
    return ["## External validation", "", "Internal minus external test set: a positive gap means lower on the external site (for the Brier "
            "score and mean absolute error, where lower is better, a negative gap means worse there).", "",
            *markdown_table(["metric", "gap (95% interval)"], rows)]


def calibration_section(calibration: dict) -> list[str]:
    """Return the calibration section: Brier and ECE per set, before and after temperature scaling."""
    rows = []
    for name, parts in calibration["sets"].items():
        after = parts.get("after_temperature_scaling", {})
        rows.append([name, parts["before"]["brier"], parts["before"]["ece"], after.get("brier"), after.get("ece")])
    temperature = calibration.get("temperature")
    return ["## Calibration", "",
            (f"Temperature scaling fitted on validation: T = {temperature:.3f}. " if temperature else "")
            + f"ECE over {calibration['bins']} equal-width bins of {calibration.get('judged_on', 'P(positive class)')}. "
            "Decisions and AUC do not change with temperature scaling.", "",
            *markdown_table(["set", "Brier", "ECE", "Brier after scaling", "ECE after scaling"], rows),
            "![Reliability](../evaluation/calibration.png)", ""]


def groups_section(groups: pd.DataFrame, task_type: str) -> list[str]:
    """Return one table per test set and group column with the headline metrics and their intervals."""
    headline = HEADLINE.get(task_type, HEADLINE_OTHER)
    lines = ["## Sites and subgroups", "",
             f"Each cell: value (95% patient-bootstrap interval). {UNRELIABLE_NOTE}", ""]
    for (set_name, group), part in groups.groupby(["set", "group"], sort=False):
        rows = []
        for subgroup, cells in part.groupby("subgroup", sort=False):
            by_metric = cells.set_index("metric")
            positives = [int(by_metric["positives"].iloc[0])] if task_type == "binary" else []
            rows.append([f"{subgroup}", int(by_metric["images"].iloc[0]), int(by_metric["patients"].iloc[0]), *positives,
                         *[with_ci(by_metric.loc[m].to_dict()) for m in headline]])
        lines += [f"### {set_name}: by {group}", "",
                  *markdown_table([group, "images", "patients", *(["positives"] if task_type == "binary" else []),
                           *[METRIC_NAMES[m] for m in headline]], rows)]
    return lines


def limitations(cfg: DictConfig, card: dict, groups: pd.DataFrame, operating: dict) -> list[str]:
    """Return the limitations section generated from the data, the subgroups and the decision rule."""
    notes = []
    if cfg.data.source == "synthetic":
        notes.append("The data are the built-in synthetic cohort: these figures demonstrate the pipeline, not clinical performance.")
    unreliable = groups[~groups["reliable"].astype(bool)][["set", "group", "subgroup"]].drop_duplicates()
    if len(unreliable):
        notes.append("Subgroups too small for reliable intervals: " + ", ".join(
            f"{r.set} {r.group}={r.subgroup}" for r in unreliable.itertuples()) + ".")
    if len(card["external_sites"]) <= 1:
        notes.append(f"External validation rests on {len(card['external_sites'])} site(s); other sites, devices and "
                     "populations may differ.")
    notes.append(f"The decision rule ({operating['method']}) was fixed on {operating['val_images']} validation images; "
                 "its sensitivity and specificity on new data carry the uncertainty shown above.")
    notes.append("Grad-CAM maps show where the network's evidence is, not why; they are not a validation of reasoning.")
    return ["## Limitations", "", *[f"- {note}" for note in notes], ""]


def _pointing_lines(folder: Path) -> list[str]:
    """Return the pointing-game sentence and table (sources that record where findings are), or nothing."""
    path = folder / "pointing_game.json"
    if not path.is_file():
        return []
    sets = json.loads(path.read_text())
    rows = [[name.replace("_", " "), r["layer"], f"{r['hits']} of {r['cases']}",
             "n/a" if r["rate"] is None else f"{r['rate']:.2f} ({r['ci_low']:.2f} to {r['ci_high']:.2f})"]
            for name, r in sets.items()]
    return ["**Pointing game.** Does the map point at the finding? For every correctly detected opacity whose position "
            "the data records, a hit is a Grad-CAM maximum within 1.5 × the opacity's radius of its centre "
            "(95% Wilson interval).", "", *markdown_table(["set", "layer", "hits", "rate (95% CI)"], rows)]


def _gradcam_section(folder: Path) -> list[str]:
    images = sorted(p.name for p in (folder / "gradcam").glob("*.png")) if (folder / "gradcam").is_dir() else []
    if not images:
        return ["## Explainability", "", "No Grad-CAM overlays were made (evaluate.gradcam.cases is 0, or the network has no "
                "feature map).", "", *_pointing_lines(folder)]
    captions_path = folder / "gradcam" / "captions.json"
    captions = json.loads(captions_path.read_text()) if captions_path.is_file() else {}
    figures = [line for name in images for line in (f"![{captions.get(name, name)}](../evaluation/gradcam/{name})", "",
                                                    f"*{captions.get(name, name)}*", "")]
    return ["## Explainability", "", "MONAI Grad-CAM of the predicted class for the most confident correct and wrong "
            "predictions of each test set: red (1) marks where the evidence for that class is strongest, blue (0) the least.",
            "", *_pointing_lines(folder), *figures]


def _provenance_line(provenance: dict | None) -> str:
    """Return the sentence naming the reported model and data by SHA-256 (no run ID, time or commit: a rerun, or a fresh
    clone of the same commit, writes the same file)."""
    if not provenance:
        return f"Written by crossmed {__version__}. "
    return (f"Model: the checkpoint with SHA-256 `{provenance['checkpoint_sha256'][:16]}…` (its MLflow run carries the "
            f"tag `checkpoint.sha256`), trained on processed data with SHA-256 `{provenance['data_sha256'][:16]}…`; "
            f"written by crossmed {__version__}. ")


def report_markdown(cfg: DictConfig, evaluation: Path, metrics_path: Path, history_path: Path, card_path: Path,
                    provenance: dict | None = None) -> str:
    """Return the report as Markdown (figures referenced as ../evaluation/, i.e. from experiments/reports/)."""
    metrics, card = read_json(metrics_path), read_json(card_path)
    operating, history = read_json(evaluation / "operating_point.json"), pd.read_csv(history_path)
    comparison = json.loads((evaluation / "comparison.json").read_text()) if (evaluation / "comparison.json").is_file() else None
    lines = [f"# Validation report: {cfg.study.name}", "",
             _provenance_line(provenance) + "Every number below was measured by the evaluate stage; nothing is recomputed "
             "here.", "",
             *data_section(card, cfg), *_model_section(cfg, history, operating, evaluation)]
    bootstrap, calibration = read_json(evaluation / "bootstrap.json"), read_json(evaluation / "calibration.json")
    groups = pd.read_csv(evaluation / "metrics_by_group.csv")
    task_type = card["task"]["type"]
    kappa = {name: values["quadratic_kappa"] for name, values in metrics.items() if "quadratic_kappa" in values}
    lines += [*_performance_section(bootstrap, task_type == "binary"), *confusion_counts_section(evaluation, operating),
              *(["Quadratic-weighted kappa of the most probable grade (point estimate): "
                 + ", ".join(f"{name} {value}" for name, value in kappa.items()) + ".", ""] if kappa else []),
              *_gap_section(metrics),
              *calibration_section(calibration), *groups_section(groups, task_type)]
    if comparison:
        rows = [[name, r["compared_with"], r["auc_a"], r["auc_b"], f"{r['difference']:+.4f} ({r['ci_low']:+.4f} to {r['ci_high']:+.4f})",
                 f"{r['p_value']:.4g}"] for name, r in comparison["sets"].items()]
        lines += ["## Comparison with a reference model", "", f"{comparison['test']} test of ROC AUC on the same images.", "",
                  *markdown_table(["set", "reference", "AUC (this)", "AUC (reference)", "difference (95% CI)", "p"], rows)]
    lines += [*_gradcam_section(evaluation), *limitations(cfg, card, groups, operating),
              "## Checklist", "", "Where this report covers the evaluation topics of TRIPOD+AI and CLAIM (item numbers: see the "
              "official checklists).", "", *markdown_table(["topic", "section"], [list(item) for item in CHECKLIST]),
              "## Configuration", "", "```yaml", OmegaConf.to_yaml(OmegaConf.masked_copy(shareable(cfg), ["study", "data", "model",
                                                                                                    "train", "evaluate"])).strip(), "```", ""]
    return "\n".join(lines)


def _embedded(html: str, base: Path) -> str:
    """Return `html` with every local <img src> replaced by a base64 data URI: one file that opens anywhere."""
    def inline(match: re.Match) -> str:
        path = (base / match.group(1)).resolve()
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'
    return re.sub(r'src="([^"]+\.png)"', inline, html)


STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
         "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;font-size:.9rem}"
         "img{max-width:100%;height:auto;margin:.25rem;vertical-align:top}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.8rem}")


def html_document(text: str, title: str, markdown_dir: Path) -> str:
    """Return Markdown as one self-contained HTML page; images referenced relative to `markdown_dir` are inlined."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>{_embedded(body, markdown_dir)}</body></html>")


def write_report(cfg: DictConfig, evaluation: Path, metrics_path: Path, history_path: Path, card_path: Path, out_dir: Path,
                 provenance: dict | None = None) -> tuple[Path, Path]:
    """Write validation_report.md and validation_report.html (images inlined) under `out_dir`; return both paths."""
    text = report_markdown(cfg, evaluation, metrics_path, history_path, card_path, provenance)
    figures = Path(os.path.relpath(evaluation, out_dir)).as_posix()
    text = text.replace("](../evaluation/", f"]({figures}/")
    md_path, html_path = out_dir / "validation_report.md", out_dir / "validation_report.html"
    write_text_atomic(md_path, text)
    write_text_atomic(html_path, html_document(text, f"Validation report: {cfg.study.name}", out_dir))
    return md_path, html_path
