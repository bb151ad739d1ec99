"""The multi-site validation: site reports (validated here or received from sites) as one table per site and the
spread between sites, for the validation report.

The spread is the range of each headline metric across sites and, for ROC AUC, a DerSimonian-Laird random-effects
pooled estimate with Cochran's Q, I^2 and tau^2 (each site's standard error read off its bootstrap interval). A
site report that validated another model (its checkpoint SHA-256 differs from the one reported on) is listed but
kept out of the table and the spread.
"""

import math
from pathlib import Path

from scipy.stats import chi2, norm

from crossmed.errors import InputError
from crossmed.evaluation.site_report_file import REPORT_FILE, SET_NAMES, read_site_report
from crossmed.reporting.documents import markdown_table
from crossmed.reporting.sections import UNRELIABLE_NOTE, metric_name, with_ci

HEADLINE = ("auc", "sensitivity", "specificity", "ppv", "npv", "brier")


def collect_site_reports(*folders: Path) -> list[tuple[Path, dict]]:
    """Return (path, report) for every <folder>/<SITE>/site_report.json, sorted by site; raise InputError when a site
    appears twice or a folder's name is not the site its report names."""
    found: dict[str, tuple[Path, dict]] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob(f"*/{REPORT_FILE}")):
            report = read_site_report(path)
            if report["site"] != path.parent.name:
                raise InputError(path, f"a report of site {report['site']} in the folder of {path.parent.name}")
            if report["site"] in found:
                raise InputError(path, f"site {report['site']} already has a report: {found[report['site']][0]}")
            found[report["site"]] = (path, report)
    return [found[site] for site in sorted(found)]


def random_effects(estimates: list[float], standard_errors: list[float], confidence: float = 0.95) -> dict | None:
    """Return the DerSimonian-Laird pooled estimate with its interval, Q, its p-value, I^2 and tau^2 (None under 2 sites)."""
    pairs = [(e, s) for e, s in zip(estimates, standard_errors) if e is not None and s is not None and s > 0]
    if len(pairs) < 2:
        return None
    w = [1 / s**2 for _, s in pairs]
    fixed = sum(wi * e for wi, (e, _) in zip(w, pairs)) / sum(w)
    q = sum(wi * (e - fixed) ** 2 for wi, (e, _) in zip(w, pairs))
    df = len(pairs) - 1
    tau2 = max(0.0, (q - df) / (sum(w) - sum(wi**2 for wi in w) / sum(w)))
    w_star = [1 / (s**2 + tau2) for _, s in pairs]
    pooled = sum(wi * e for wi, (e, _) in zip(w_star, pairs)) / sum(w_star)
    se = math.sqrt(1 / sum(w_star))
    z = norm.ppf(0.5 + confidence / 2)
    return {"pooled": round(pooled, 4), "ci_low": round(pooled - z * se, 4), "ci_high": round(pooled + z * se, 4),
            "q": round(q, 4), "q_p_value": round(float(chi2.sf(q, df)), 4), "i2": round(max(0.0, (q - df) / q) if q > 0 else 0.0, 4),
            "tau2": round(tau2, 6), "sites": len(pairs)}


def _standard_error(result: dict, confidence: float) -> float | None:
    """Return the standard error a bootstrap interval implies (its width over 2 z), or None when it is unreliable."""
    if result.get("value") is None or not result.get("reliable"):
        return None
    return (result["ci_high"] - result["ci_low"]) / (2 * norm.ppf(0.5 + confidence / 2))


def multi_site_section(reports: list[tuple[Path, dict]], checkpoint_sha256: str | None, threshold: float | None = None) -> list[str]:
    """Return the report's multi-site validation section (nothing when no site report exists); reports of another
    checkpoint or operating threshold than the reported model's are listed apart."""
    if not reports:
        return []
    current = [(p, r) for p, r in reports if (checkpoint_sha256 is None or r["model"].get("checkpoint_sha256") == checkpoint_sha256)
               and (threshold is None or r["operating_point"].get("threshold") == threshold)]
    stale = [(p, r) for p, r in reports if (p, r) not in current]
    lines = ["## Validation at each site", "",
             "Each site ran the exported model at its saved threshold on its own test images and sent back only aggregates "
             "(`crossmed validate`: no identifier, no per-case row). Values with intervals from a bootstrap of the "
             f"site's patients. {UNRELIABLE_NOTE}", ""]
    rows, aucs = [], []
    for _, report in current:
        for name, part in report["sets"].items():
            metrics = part["metrics"]
            rows.append([report["site"], name.replace("_", " "), f"{part['images']} / {part['patients']}",
                         *[with_ci(metrics[m]) if m in metrics else "" for m in HEADLINE]])
            if "auc" in metrics:
                aucs.append((report["site"], metrics["auc"], report["bootstrap"]["confidence"]))
    lines += markdown_table(["site", "set", "images / patients", *[metric_name(m) for m in HEADLINE]], rows)
    withheld = [f"{report['site']} {name.replace('_', ' ')}" for _, report in current
                for name in (report.get("withheld") or {}) if name in SET_NAMES]
    if withheld:
        lines += [f"Withheld by the sites (too few patients to report without describing single ones): {', '.join(withheld)}.", ""]
    lines += _spread_lines(aucs)
    if stale:
        lines += ["Not included: site reports of another model or threshold than the one reported here (ask the site to "
                  "validate the current export):", "", *[f"- {r['site']}: checkpoint SHA-256 `{str(r['model'].get('checkpoint_sha256'))[:16]}…` "
                                            f"({p.parent.name}/{REPORT_FILE})" for p, r in stale], ""]
    return lines


def _spread_lines(aucs: list[tuple[str, dict, float]]) -> list[str]:
    """Return the between-site spread of ROC AUC: range and the random-effects summary."""
    values = [(site, result["value"]) for site, result, _ in aucs if result["value"] is not None]
    if len(values) < 2:
        return ["Between-site spread: needs at least two site results.", ""]
    low, high = min(values, key=lambda v: v[1]), max(values, key=lambda v: v[1])
    lines = [f"Between-site spread of ROC AUC: {low[1]:.3f} ({low[0]}) to {high[1]:.3f} ({high[0]}), a range of "
             f"{high[1] - low[1]:.3f}."]
    pooled = random_effects([r["value"] for _, r, _ in aucs], [_standard_error(r, c) for _, r, c in aucs], aucs[0][2])
    if pooled is None:
        lines += ["No random-effects summary: fewer than two sites have a reliable interval.", ""]
        return lines
    lines += [f"Random-effects (DerSimonian-Laird) pooled ROC AUC over {pooled['sites']} site results: {pooled['pooled']:.3f} "
              f"({pooled['ci_low']:.3f} to {pooled['ci_high']:.3f}); heterogeneity I² {pooled['i2']:.0%}, tau² "
              f"{pooled['tau2']:.5f}, Cochran's Q {pooled['q']:.2f} (p {pooled['q_p_value']:.3f})"
              + (". With fewer than five sites, I² and tau² are imprecise: read the per-site intervals first." if pooled["sites"] < 5
                 else ".")]
    return [*lines, ""]
