"""The multi-site validation: site reports (validated here or received from sites) as one table per site and the
spread between sites, for the validation report.

The spread is the range of ROC AUC across sites and a DerSimonian-Laird random-effects pooled AUC with Cochran's Q,
I^2 and tau^2. Pooling is on the logit scale (each site's standard error read off the logits of its bootstrap
interval, the pooled value and interval transformed back), so the pooled interval stays inside (0, 1) and a site
near 1 does not get a symmetric interval it cannot have; a site whose interval reaches 0 or 1, or is unreliable, is
left out of the pooling and named. Each site counts once: a site that reports several sets enters with its largest
(by patients). A site report that validated another model (its checkpoint SHA-256 differs from the one reported on)
is listed but kept out of the table and the spread.
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
    return {"pooled": pooled, "ci_low": pooled - z * se, "ci_high": pooled + z * se, "q": q, "q_p_value": float(chi2.sf(q, df)),
            "i2": max(0.0, (q - df) / q) if q > 0 else 0.0, "tau2": tau2, "sites": len(pairs)}


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def pooled_auc(results: list[tuple[str, dict]], confidence: float = 0.95) -> tuple[dict | None, list[str]]:
    """Pool (site, AUC result) pairs by random effects on the logit scale; return the summary (pooled AUC and interval
    back on the AUC scale; tau^2 on the logit scale), or None under two poolable sites, and the sites left out with why."""
    z = norm.ppf(0.5 + confidence / 2)
    logits, errors, left_out = [], [], []
    for site, result in results:
        value, low, high = result.get("value"), result.get("ci_low"), result.get("ci_high")
        if value is None or not result.get("reliable"):
            left_out.append(f"{site} (interval unreliable)")
        elif not 0 < low <= value <= high < 1:
            left_out.append(f"{site} (interval reaches {0 if low <= 0 else 1})")
        elif high == low:
            left_out.append(f"{site} (interval of zero width)")
        else:
            logits.append(_logit(value))
            errors.append((_logit(high) - _logit(low)) / (2 * z))
    summary = random_effects(logits, errors, confidence)
    if summary is not None:
        summary.update(pooled=_expit(summary["pooled"]), ci_low=_expit(summary["ci_low"]), ci_high=_expit(summary["ci_high"]))
    return summary, left_out


def _per_site(results: list[tuple[str, str, int, dict]]) -> list[tuple[str, dict]]:
    """Return one (site, AUC result) per site from (site, set, patients, result): the site's set with the most patients."""
    chosen: dict[str, tuple[int, dict]] = {}
    for site, _, patients, result in results:
        if site not in chosen or patients > chosen[site][0]:
            chosen[site] = (patients, result)
    return [(site, chosen[site][1]) for site in sorted(chosen)]


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
                aucs.append((report["site"], name, int(part["patients"]), metrics["auc"]))
    lines += markdown_table(["site", "set", "images / patients", *[metric_name(m) for m in HEADLINE]], rows)
    withheld = [f"{report['site']} {name.replace('_', ' ')}" for _, report in current
                for name in (report.get("withheld") or {}) if name in SET_NAMES]
    if withheld:
        lines += [f"Withheld by the sites (too few patients to report without describing single ones): {', '.join(withheld)}.", ""]
    lines += _spread_lines(_per_site(aucs), current[0][1]["bootstrap"]["confidence"] if current else 0.95)
    if stale:
        lines += ["Not included: site reports of another model or threshold than the one reported here (ask the site to "
                  "validate the current export):", "", *[f"- {r['site']}: checkpoint SHA-256 `{str(r['model'].get('checkpoint_sha256'))[:16]}…` "
                                            f"({p.parent.name}/{REPORT_FILE})" for p, r in stale], ""]
    return lines


def _spread_lines(aucs: list[tuple[str, dict]], confidence: float) -> list[str]:
    """Return the between-site spread of ROC AUC (one result per site): range and the random-effects summary."""
    values = [(site, result["value"]) for site, result in aucs if result["value"] is not None]
    if len(values) < 2:
        return ["Between-site spread: needs at least two site results.", ""]
    low, high = min(values, key=lambda v: v[1]), max(values, key=lambda v: v[1])
    lines = [f"Between-site spread of ROC AUC: {low[1]:.3f} ({low[0]}) to {high[1]:.3f} ({high[0]}), a range of "
             f"{high[1] - low[1]:.3f}."]
    pooled, left_out = pooled_auc(aucs, confidence)
    if pooled is None:
        lines += ["No random-effects summary: fewer than two sites have a reliable interval inside (0, 1)"
                  + (f" (left out: {', '.join(left_out)})." if left_out else "."), ""]
        return lines
    lines += [f"Random-effects (DerSimonian-Laird, logit scale) pooled ROC AUC over {pooled['sites']} sites: {pooled['pooled']:.3f} "
              f"({pooled['ci_low']:.3f} to {pooled['ci_high']:.3f}); heterogeneity I² {pooled['i2']:.0%}, tau² "
              f"{pooled['tau2']:.4f} (logit scale), Cochran's Q {pooled['q']:.2f} (p {pooled['q_p_value']:.3f})"
              + (f"; left out: {', '.join(left_out)}" if left_out else "")
              + (". With fewer than five sites, I² and tau² are imprecise: read the per-site intervals first." if pooled["sites"] < 5
                 else ".")]
    return [*lines, ""]
