"""DeLong's test for two correlated ROC AUCs on the same cases (DeLong et al. 1988; fast midrank form of Sun & Xu 2014).

No maintained Python library ships it (scikit-learn and SciPy do not), so it is written here from the
paper and checked in tests against the definition (the O(m*n) structural components) and scikit-learn's AUC.
"""

import numpy as np
from scipy.stats import norm, rankdata


def _structural_components(labels: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Return (AUC, V10 per positive, V01 per negative): each case's share of the Mann-Whitney statistic."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    m, n = len(positives), len(negatives)
    within_pos, within_neg = rankdata(positives), rankdata(negatives)
    overall = rankdata(np.concatenate([positives, negatives]))
    v10 = (overall[:m] - within_pos) / n  # for each positive: share of negatives scored below it (ties half)
    v01 = 1.0 - (overall[m:] - within_neg) / m  # for each negative: share of positives scored above it
    auc = float(v10.mean())
    return auc, v10, v01


def delong_test(labels, scores_a, scores_b, confidence: float = 0.95) -> dict:
    """Return both AUCs, their difference (a - b) with its DeLong standard error, interval, z and two-sided p-value."""
    labels = np.asarray(labels).astype(int)
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError("DeLong's test needs positive and negative cases")
    auc_a, v10_a, v01_a = _structural_components(labels, np.asarray(scores_a, dtype=float))
    auc_b, v10_b, v01_b = _structural_components(labels, np.asarray(scores_b, dtype=float))
    m, n = len(v10_a), len(v01_a)
    s10 = np.cov(np.vstack([v10_a, v10_b])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01_a, v01_b])) if n > 1 else np.zeros((2, 2))
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    difference = auc_a - auc_b
    se = float(np.sqrt(max(variance, 0.0)))
    if se == 0.0:  # identical rankings: no evidence of a difference
        z, p_value = 0.0, 1.0
    else:
        z = difference / se
        p_value = float(2 * norm.sf(abs(z)))
    half = norm.ppf(0.5 + confidence / 2) * se
    return {"auc_a": round(auc_a, 4), "auc_b": round(auc_b, 4), "difference": round(difference, 4),
            "se": round(se, 5), "ci_low": round(difference - half, 4), "ci_high": round(difference + half, 4),
            "z": round(float(z), 3), "p_value": float(p_value), "positives": m, "negatives": n}


def auc_variance(labels, scores) -> float:
    """Return DeLong's variance of one AUC (the diagonal term of the paired test)."""
    labels = np.asarray(labels).astype(int)
    _, v10, v01 = _structural_components(labels, np.asarray(scores, dtype=float))
    return float(np.var(v10, ddof=1) / len(v10) + np.var(v01, ddof=1) / len(v01))
