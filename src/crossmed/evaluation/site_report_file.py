"""The site report on disk: its file names, format tag and a checked reader (no PyTorch, no model needed)."""

import json
from pathlib import Path

from crossmed.errors import InputError

REPORT_FORMAT = "crossmed-site-report/1"
REPORT_FILE, SUMMARY_FILE = "site_report.json", "site_report.md"


def read_site_report(path: str | Path) -> dict:
    """Return a site_report.json; raise InputError naming the file when it is not one."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(path, f"not a readable site report ({err})") from err
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise InputError(path, f"not a crossmed site report (format is not {REPORT_FORMAT})")
    missing = [key for key in ("site", "model", "sets", "bootstrap") if key not in report]
    if missing:
        raise InputError(path, f"site report without {', '.join(missing)}")
    return report
