"""The pointing game (Zhang et al., 2018): does the saliency map's maximum fall on the finding?

For sources that know where each finding is (the built-in cohort records every opacity's centre and
radius, carried through de-identification and resampling into the processed manifest), a correctly
detected positive counts as a hit when the Grad-CAM maximum lies within TOLERANCE x the radius of the
finding's centre.
"""

import logging

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest

log = logging.getLogger("crossmed.evaluate")
FINDING_COLUMNS = ("finding_row", "finding_col", "finding_radius")  # processed-grid pixels (manifest)
TOLERANCE = 1.5
BATCH = 32


def finding_positions(rows: pd.DataFrame) -> np.ndarray | None:
    """Return (N, 3) row, column, radius of each image's finding (NaN without one), or None when the source has none."""
    if not set(FINDING_COLUMNS) <= set(rows.columns):
        return None
    return np.column_stack([pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=float) for c in FINDING_COLUMNS])


def hits(heat: np.ndarray, findings: np.ndarray, tolerance: float = TOLERANCE) -> np.ndarray:
    """Return, per (H, W) map of `heat` (N, H, W), whether its maximum lies within tolerance x radius of the finding."""
    flat = heat.reshape(len(heat), -1).argmax(axis=1)
    peak_row, peak_col = np.unravel_index(flat, heat.shape[1:])
    distance = np.hypot(peak_row - findings[:, 0], peak_col - findings[:, 1])
    return distance <= tolerance * findings[:, 2]


def pointing_game(cam, images, table: pd.DataFrame, findings: np.ndarray, positive: int, device: torch.device) -> dict:
    """Play the pointing game on the correctly detected positives of one set with a Grad-CAM (see saliency.grad_cam)."""
    actual, predicted = table["actual"].to_numpy(), table["predicted"].to_numpy()
    chosen = np.flatnonzero((actual == positive) & (predicted == positive) & np.isfinite(findings).all(axis=1))
    scored = []
    for start in range(0, len(chosen), BATCH):
        part = chosen[start:start + BATCH]
        x = torch.as_tensor(np.stack([np.asarray(images[i], dtype=np.float32) for i in part]), device=device)
        with torch.enable_grad():
            heat = cam(x, class_idx=positive)[:, 0].detach().cpu().numpy()
        scored.append(hits(heat, findings[part]))
    won = np.concatenate(scored) if scored else np.zeros(0, bool)
    result = {"cases": int(len(won)), "hits": int(won.sum()), "rate": None, "ci_low": None, "ci_high": None,
              "tolerance": f"{TOLERANCE} x radius"}
    if len(won):
        interval = binomtest(int(won.sum()), len(won)).proportion_ci(0.95, method="wilson")
        result.update(rate=round(float(won.mean()), 4), ci_low=round(float(interval.low), 4), ci_high=round(float(interval.high), 4))
    log.info("pointing game on %s: %d of %d correctly detected findings hit", table["set"].iloc[0] if len(table) else "?",
             result["hits"], result["cases"])
    return result
