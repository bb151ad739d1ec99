"""Validation at a site: an exported model run on the site's own processed data, written as a report of aggregates.

The site runs this on its own machine (`crossmed validate`, or the validate_sites stage of a study that holds every
site's data); only the report folder leaves the site. It names the model by its checkpoint's SHA-256, so the
coordinator's report stage can tell whether a site validated the model it is reporting on.
"""

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crossmed import __version__
from crossmed.data.processed import LABELS_FILE, MANIFEST_FILE, ProcessedData
from crossmed.data.task import Task
from crossmed.errors import InputError
from crossmed.evaluation.bootstrap import BootstrapSettings
from crossmed.evaluation.site_report import TooFewPatients, site_set_report
from crossmed.evaluation.site_report_file import REPORT_FILE, REPORT_FORMAT, SUMMARY_FILE
from crossmed.files import atomic_directory, write_json_atomic, write_text_atomic
from crossmed.inference.exported import ExportedModel

log = logging.getLogger("crossmed.validate")
SETS = {"test": "internal_test", "external_test": "external_test"}  # manifest split -> evaluation set
BATCH = 32


@dataclass(frozen=True)
class SiteValidation:
    """How a site validates: bootstrap settings, the runtime, the smallest group reported, whether every row is one set."""

    settings: BootstrapSettings
    runtime: str = "torchscript"
    min_patients: int = 5
    all_rows: bool = False


def _site_rows(data: ProcessedData, folder: Path, site: str, all_rows: bool) -> dict:
    """Return {set name: manifest rows} of the site: its test and external-test rows, or every row as set 'site'."""
    rows = data.manifest[data.manifest["site"] == site]
    if rows.empty:
        found = ", ".join(sorted(data.manifest["site"].unique())) or "none"
        raise InputError(folder / MANIFEST_FILE, f"no images of site {site} (sites here: {found})")
    if all_rows:
        return {"site": rows}
    sets = {name: rows[rows["split"] == split] for split, name in SETS.items() if (rows["split"] == split).any()}
    if not sets:
        raise InputError(folder / MANIFEST_FILE, f"site {site} has no test or external_test rows; preprocess with the site in "
                         "study.external_sites, or validate every row of the site (--all-rows)")
    return sets


def _check_fit(model: ExportedModel, data: ProcessedData, folder: Path) -> None:
    """Raise InputError when the data were prepared differently from what the model expects (recipe, shape, task)."""
    expected, prepared = model.recipe.as_dict(), data.card.get("recipe")
    if prepared != expected:
        raise InputError(folder / "data_card.json", f"prepared with recipe {prepared}, but the model expects {expected}; "
                         "preprocess with the model's recipe")
    shape = list(model.description["inputs"]["image"]["shape"][1:])
    if list(data.images.shape[1:]) != shape:
        raise InputError(folder / "images.npy", f"images of shape {list(data.images.shape[1:])}, the model takes {shape}")
    if data.task.as_dict() != model.description["task"]:
        raise InputError(folder / "data_card.json", f"task {data.task.as_dict()} differs from the model's {model.description['task']}")


def _check_out_dir(out_dir: Path, *inputs: Path) -> None:
    """Raise InputError when the report folder would replace anything but an earlier site report, or touch an input."""
    out = out_dir.resolve()
    for path in inputs:
        given = path.resolve()
        if out == given or given.is_relative_to(out) or out.is_relative_to(given):
            raise InputError(out_dir, f"the report folder must lie outside {path} (it is replaced whole)")
    if out.exists():
        others = [p.name for p in out.iterdir() if p.name not in (REPORT_FILE, SUMMARY_FILE)] if out.is_dir() else [out.name]
        if others:
            raise InputError(out_dir, f"exists and holds {', '.join(sorted(others)[:3])}: give a new or an earlier report's folder")


def _probabilities(model: ExportedModel, images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Return the model's probabilities for the indexed images, in batches."""
    parts = [model.probabilities(np.asarray(images[index[i:i + BATCH]], dtype=np.float32)) for i in range(0, len(index), BATCH)]
    return np.concatenate(parts).astype(np.float64)


def _data_digest(folder: Path) -> str:
    """Return the SHA-256 of the manifest and labels: which data were validated on, without saying what they hold."""
    digest = hashlib.sha256()
    for name in (MANIFEST_FILE, LABELS_FILE):
        digest.update(hashlib.sha256((folder / name).read_bytes()).hexdigest().encode())
    return digest.hexdigest()


def validate_site(model_path: str | Path, data_folder: str | Path, site: str, out_dir: str | Path,
                  how: SiteValidation) -> dict:
    """Validate the exported model on one site's processed data; write site_report.json and .md; return the report."""
    folder, out_dir = Path(data_folder), Path(out_dir)
    _check_out_dir(out_dir, folder, Path(model_path))
    model = ExportedModel.load(model_path, how.runtime)
    data = ProcessedData.load(folder)
    _check_fit(model, data, folder)
    task = Task.from_dict(model.description["task"])
    threshold = float(model.description["operating_point"].get("threshold", 0.5))
    subgroups = list(data.card.get("subgroups", []))
    sets, withheld = {}, {}
    for name, rows in _site_rows(data, folder, site, how.all_rows).items():
        index = rows["index"].to_numpy(dtype=np.int64)
        log.info("site %s, %s: predicting %d images of %d patients with %s", site, name, len(index),
                 rows["patient_id"].nunique(), model.artifact(how.runtime))
        probabilities = _probabilities(model, data.images, index)
        try:
            sets[name] = site_set_report(task, rows, data.labels[index], probabilities, threshold, how.settings, subgroups,
                                         name, how.min_patients)
        except TooFewPatients as err:
            log.warning("site %s: %s", site, err)
            withheld[name] = str(err)
    if not sets:
        raise TooFewPatients(f"site {site}: nothing to report: " + "; ".join(withheld.values()))
    training = model.description.get("training", {})
    report = {"format": REPORT_FORMAT, "site": site, "crossmed_version": __version__,
              "model": {"name": model.description.get("name"), "checkpoint_sha256": training.get("checkpoint_sha256"),
                        "runtime": how.runtime, "task": model.description["task"], "classes": model.description["classes"]},
              "operating_point": {"threshold": threshold, "method": model.description["operating_point"].get("method"),
                                  "chosen_on": "the model's own validation split (saved in model.json)"},
              "data": {"sha256": _data_digest(folder), "recipe": data.card.get("recipe")},
              "bootstrap": {"unit": "patient", "resamples": how.settings.resamples, "seed": how.settings.seed,
                            "confidence": how.settings.confidence, "min_per_class": how.settings.min_per_class},
              "suppressed_below_patients": how.min_patients, "sets": sets, "withheld": withheld}
    with atomic_directory(out_dir) as work:
        write_json_atomic(work / REPORT_FILE, report)
        write_text_atomic(work / SUMMARY_FILE, site_summary_markdown(report))
    log.info("site %s: wrote %s (aggregates only)", site, out_dir / REPORT_FILE)
    return report


def site_summary_markdown(report: dict) -> str:
    """Return the site report as Markdown, for the site's data-protection officer to read before it is sent."""
    lines = [f"# Site report: {report['site']}", "",
             f"Model `{report['model']['name']}` (checkpoint SHA-256 `{str(report['model']['checkpoint_sha256'])[:16]}…`), "
             f"run with {report['model']['runtime']} at its saved threshold {report['operating_point']['threshold']:.4f}. "
             f"Intervals: {report['bootstrap']['confidence']:.0%}, {report['bootstrap']['resamples']} bootstrap resamples of "
             f"patients. This file and {REPORT_FILE} hold aggregates only: no identifier, no per-case row; groups and "
             f"calibration bins of fewer than {report['suppressed_below_patients']} are suppressed.", ""]
    for name, part in report["sets"].items():
        lines += [f"## {name.replace('_', ' ')}: {part['images']} images of {part['patients']} patients", "",
                  "| metric | value | interval |", "|---|---|---|"]
        for metric, result in part["metrics"].items():
            value = "undefined" if result["value"] is None else f"{result['value']:.3f}"
            span = "" if result["value"] is None else f"{result['ci_low']:.3f} to {result['ci_high']:.3f}"
            lines.append(f"| {metric} | {value} | {span}{'' if result['reliable'] else ' †'} |")
        if "at_operating_point" in part:
            counts = part["at_operating_point"]
            lines += ["", "At the threshold: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counts.items()
                                                           if k != "threshold") + "."]
        lines += ["", f"Calibration: Brier {part['calibration']['brier']}, ECE {part['calibration']['ece']}.", ""]
    lines += ["† an interval that should not be relied on (too few cases of a class, or zero width).", ""]
    return "\n".join(lines)
