"""The validation report: one Markdown file and a self-contained HTML twin, laid out along TRIPOD+AI and CLAIM.

Everything comes from files the earlier stages wrote (data card, training history, evaluation folder,
metrics.json) and the composed config; nothing is recomputed, so the report states exactly what was measured.
"""

import json
import os
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from crossmed import __version__
from crossmed.files import write_text_atomic
from crossmed.reporting.documents import html_document, markdown_table, read_json
from crossmed.reporting.multi_site import multi_site_section
from crossmed.reporting.sections import (UNRELIABLE_NOTE, calibration_section, confusion_counts_section, data_section,
                                         groups_section, limitations, metric_name, with_ci)
from crossmed.shareable_config import shareable
from crossmed.study_paths import within

# Where the report answers the evaluation topics of TRIPOD+AI (BMJ 2024) and CLAIM (2024 update). Item numbers are
# left to the study team: map them from the official checklists, which this project does not redistribute.
CHECKLIST = [("Data sources, setting, participants and sites", "Data"),
             ("Data preparation: de-identification and preprocessing", "Data"),
             ("Data partitions and leakage between them", "Data"),
             ("Model: architecture, training, selection of the final weights", "Model and training"),
             ("Decision threshold and how it was chosen", "Model and training"),
             ("Performance measures with their uncertainty", "Performance"),
             ("External validation", "External validation"),
             ("Validation at each site and the spread between sites", "Validation at each site"),
             ("Calibration", "Calibration"),
             ("Performance in subgroups and sites (fairness)", "Sites and subgroups"),
             ("Explainability of the model's outputs", "Explainability"),
             ("Limitations", "Limitations")]


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
    settings = (f"(learning rate {train.learning_rate}, weight decay {train.weight_decay}, {train.schedule} schedule), batch "
                f"{train.batch_size}")
    if "round" in history.columns:  # train=federated: one row per round
        fed = train.federated
        internal = [s for s in cfg.study.sites if s not in cfg.study.external_sites]
        sites = ", ".join(fed.sites or cfg.study.get("train_sites") or internal)
        how = (f"trained from scratch by federated learning ({fed.aggregation}"
               f"{f', mu {fed.proximal_mu}' if fed.aggregation == 'fedprox' else ''}) across sites {sites}: each site trained "
               f"on its own images with {train.optimizer} {settings}, {fed.local_epochs} local epoch(s) per round, and only "
               f"weights and training statistics went to the coordinator. {len(history)} of {fed.rounds} rounds, seed "
               f"{cfg.seed}, deterministic {train.deterministic}. The weights used are the global model of round "
               f"{int(best['round'])} (epoch {int(best['epoch'])}; best validation AUC {best['val_auc']:.4f}, the sites' "
               f"validation sets weighted by size).{_privacy_sentence(fed, history)}")
    else:
        how = (f"trained from scratch with {train.optimizer} {settings}, up to {train.max_epochs} epochs, seed {cfg.seed}, "
               f"deterministic {train.deterministic}. Trained {len(history)} epochs; the weights used are those of epoch "
               f"{int(best['epoch'])} (best validation AUC {best['val_auc']:.4f}).")
    return ["## Model and training", "",
            f"Network **{cfg.model.name}** (`{cfg.model.net._target_}`), {how}{_arithmetic_line(evaluation)}", "",
            f"Operating point: threshold **{operating['threshold']:.4f}** by {operating['method']}"
            + (f" (target {operating['target']})" if "target" in operating else "")
            + f", chosen on the validation split ({operating['val_images']} images) and applied unchanged to every test set.", ""]


def _privacy_sentence(fed, history: pd.DataFrame) -> str:
    """Return the sentences stating secure aggregation and the differential privacy of a federated training (with the
    epsilon it spent), or ''."""
    secure = fed.get("secure_aggregation")
    masked = (" **Secure aggregation** (Flower's SecAgg+): each site's update was masked, and the coordinator learnt only "
              "their weighted sum in every round." if secure is not None and secure.enabled else "")
    if "epsilon" not in history.columns or history["epsilon"].isna().all():
        return masked
    dp = fed.differential_privacy
    return (f" **Differential privacy at the level of sites**: each site's update was clipped to L2 norm {dp.clipping_norm} and "
            f"Gaussian noise (noise multiplier {dp.noise_multiplier}) added to every aggregate; after {len(history)} released "
            f"rounds the privacy spent is **epsilon {history['epsilon'].iloc[-1]:.2f} at delta {dp.delta:g}** (Flower's RDP "
            "accountant, every site in every round). It protects whether a whole site took part, not single patients "
            "beyond that; the figures below are of the noisy model.")


def _performance_section(bootstrap: dict, binary: bool) -> list[str]:
    sets = list(bootstrap["sets"])
    keys = list(dict.fromkeys(k for values in bootstrap["sets"].values() for k in values))
    rows = [[metric_name(m), *[with_ci(bootstrap["sets"][s][m]) if m in bootstrap["sets"][s] else "" for s in sets]]
            for m in keys]
    return ["## Performance", "",
            f"Values with {bootstrap['confidence']:.0%} intervals from {bootstrap['resamples']} bootstrap resamples of "
            f"**patients** (seed {bootstrap['seed']}). {UNRELIABLE_NOTE}", "", *markdown_table(["metric", *sets], rows),
            *(["![ROC](../evaluation/roc.png) ![Precision-recall](../evaluation/pr.png)", ""] if binary else [])]


def _gap_section(metrics: dict) -> list[str]:
    gap = metrics.get("external_gap")
    if not gap:
        return ["## External validation", "", "No external test set in this study.", ""]
    rows = [[metric_name(m), f"{gap[m]:+.3f} ({gap[m + '_ci_low']:+.3f} to {gap[m + '_ci_high']:+.3f})"]
            for m in gap if "_ci_" not in m and gap[m] is not None]
    return ["## External validation", "", "Internal minus external test set: a positive gap means lower on the external site (for the Brier "
            "score and mean absolute error, where lower is better, a negative gap means worse there).", "",
            *markdown_table(["metric", "gap (95% interval)"], rows)]


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
                    provenance: dict | None = None, site_reports: list | None = None) -> str:
    """Return the report as Markdown (figures referenced as ../evaluation/, i.e. from experiments/reports/); `site_reports`
    are (path, report) pairs of sites' validations (crossmed.reporting.multi_site)."""
    metrics, card = read_json(metrics_path), read_json(card_path)
    operating, history = read_json(evaluation / within(cfg, "operating_point", "evaluation")), pd.read_csv(history_path)
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
              *multi_site_section(site_reports or [], (provenance or {}).get("checkpoint_sha256"), operating["threshold"]),
              *calibration_section(calibration), *groups_section(groups, task_type)]
    if comparison:
        rows = [[label, name.replace("_", " "), r["compared_with"], r["auc_a"], r["auc_b"],
                 f"{r['difference']:+.4f} ({r['ci_low']:+.4f} to {r['ci_high']:+.4f})", f"{r['p_value']:.4g}"]
                for label, part in comparison["references"].items() for name, r in part["sets"].items()]
        lines += ["## Comparison with other models", "", f"{comparison['test']} test of ROC AUC on the same images: this "
                  "model minus the other.", "",
                  *markdown_table(["model", "set", "source", "AUC (this)", "AUC (other)", "difference (95% CI)", "p"], rows)]
    lines += [*_gradcam_section(evaluation), *limitations(cfg, card, groups, operating),
              "## Checklist", "", "Where this report covers the evaluation topics of TRIPOD+AI and CLAIM (item numbers: see the "
              "official checklists).", "", *markdown_table(["topic", "section"], [list(item) for item in CHECKLIST]),
              "## Configuration", "", "```yaml", OmegaConf.to_yaml(OmegaConf.masked_copy(shareable(cfg), ["study", "data", "model",
                                                                                                    "train", "evaluate"])).strip(), "```", ""]
    return "\n".join(lines)


def write_report(cfg: DictConfig, evaluation: Path, metrics_path: Path, history_path: Path, card_path: Path, out_dir: Path,
                 provenance: dict | None = None, site_reports: list | None = None) -> tuple[Path, Path]:
    """Write validation_report.md and validation_report.html (images inlined) under `out_dir`; return both paths."""
    text = report_markdown(cfg, evaluation, metrics_path, history_path, card_path, provenance, site_reports)
    figures = Path(os.path.relpath(evaluation, out_dir)).as_posix()
    text = text.replace("](../evaluation/", f"]({figures}/")
    md_path, html_path = out_dir / "validation_report.md", out_dir / "validation_report.html"
    write_text_atomic(md_path, text)
    write_text_atomic(html_path, html_document(text, f"Validation report: {cfg.study.name}", out_dir))
    return md_path, html_path
