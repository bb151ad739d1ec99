"""The site report on disk: its file names, format tag and a checked reader (no PyTorch, no model needed)."""

import json
import math
from pathlib import Path

from crossmed.errors import InputError
from crossmed.site_codes import SITE_CODE

REPORT_FORMAT = "crossmed-site-report/1"
REPORT_FILE, SUMMARY_FILE = "site_report.json", "site_report.md"
SET_NAMES = ("internal_test", "external_test", "site")
UNIT_METRICS = ("auc", "pr_auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier")


def read_site_report(path: str | Path) -> dict:
    """Return a site_report.json; raise InputError naming the file when it is not one."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a readable site report ({err})") from err
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise InputError(path, f"not a crossmed site report (format is not {REPORT_FORMAT})")
    missing = [key for key in ("site", "model", "sets", "bootstrap", "operating_point") if key not in report]
    if missing:
        raise InputError(path, f"site report without {', '.join(missing)}")
    problem = _problem(report)
    if problem:
        raise InputError(path, f"not a valid site report: {problem}")
    return report


def _problem(report: dict) -> str | None:
    """Return what is wrong with a site report's content (site code, set names, counts, metrics in [0, 1]), or None."""
    if not isinstance(report["site"], str) or not SITE_CODE.fullmatch(report["site"]):
        return f"site {str(report['site'])[:40]!r} is not a site code (letters, digits, '-' and '_')"
    if not isinstance(report["model"], dict) or not isinstance(report["sets"], dict) or not report["sets"]:
        return "model and sets must be objects, with at least one set"
    confidence = report["bootstrap"].get("confidence") if isinstance(report["bootstrap"], dict) else None
    if not isinstance(confidence, float) or not 0 < confidence < 1:
        return "bootstrap.confidence must lie between 0 and 1"
    for name, part in report["sets"].items():
        if name not in SET_NAMES:
            return f"unknown set {str(name)[:40]!r} (known: {', '.join(SET_NAMES)})"
        if not isinstance(part, dict) or not isinstance(part.get("metrics"), dict):
            return f"set {name} has no metrics"
        for key in ("images", "patients"):
            if not isinstance(part.get(key), int) or isinstance(part.get(key), bool) or part[key] < 1:
                return f"set {name}: {key} must be a positive whole number"
        for metric, result in part["metrics"].items():
            if not isinstance(result, dict) or not isinstance(result.get("reliable"), bool):
                return f"set {name}, {str(metric)[:40]}: not a metric with an interval"
            values = [result.get(k) for k in ("ci_low", "value", "ci_high")]
            if values == [None, None, None]:
                continue
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                return f"set {name}, {str(metric)[:40]}: value and interval must be finite numbers"
            if metric in UNIT_METRICS and not 0 <= values[0] <= values[1] <= values[2] <= 1:
                return f"set {name}, {metric}: needs 0 <= ci_low <= value <= ci_high <= 1 (got {values})"
    return None
