"""Confidence intervals by bootstrap over patients: whole patients are drawn with replacement, never single images.

Images of one patient are correlated; resampling images would make intervals too narrow. Each resample
draws as many patients as the set has, and every image of a drawn patient counts as often as it was drawn.
The percentile interval is reported with how many resamples had the metric defined; an interval is flagged
unreliable when the set has fewer than `min_per_class` positives or negatives.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from crossmed.evaluation.weighted import binary_metrics

CHUNK = 100  # resamples computed together: (CHUNK x cases) weights stay small


@dataclass(frozen=True)
class BootstrapSettings:
    """evaluate.bootstrap from conf/: how many resamples, their seed, the interval's coverage and the reliability floor."""

    resamples: int = 1000
    seed: int = 0
    confidence: float = 0.95
    min_per_class: int = 10

    def generator(self, set_name: str) -> np.random.Generator:
        """Return a test set's resampling generator, seeded by (seed, set name): sets draw independently of each other."""
        return np.random.default_rng([self.seed, zlib.crc32(set_name.encode())])


def patient_weights(patient_ids, resamples: int, rng: np.random.Generator):
    """Yield (at most CHUNK x images) matrices: how often each image's patient was drawn in each resample."""
    codes, patients = pd.factorize(pd.Series(patient_ids).astype(str))
    uniform = np.full(len(patients), 1.0 / len(patients))
    for start in range(0, resamples, CHUNK):
        counts = rng.multinomial(len(patients), uniform, size=min(CHUNK, resamples - start))
        yield counts[:, codes].astype(np.float64)


def metric_intervals(metrics: Callable[[np.ndarray], dict[str, np.ndarray]], patient_ids, settings: BootstrapSettings,
                     rng: np.random.Generator, reliable: bool) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Return ({metric: value and interval}, {metric: resample values}) for any weighted-metrics function.

    `metrics(weights)` takes a (resamples x cases) weight matrix and returns one array per metric.
    """
    point = {name: float(values[0]) for name, values in metrics(np.ones((1, len(patient_ids)))).items()}
    parts = [metrics(weights) for weights in patient_weights(patient_ids, settings.resamples, rng)]
    samples = {name: np.concatenate([part[name] for part in parts]) for name in point}
    return {name: interval(point[name], samples[name], settings, reliable) for name in point}, samples


def interval(point: float, samples: np.ndarray, settings: BootstrapSettings, reliable: bool) -> dict:
    """Return the point estimate with its percentile interval, the defined resamples and the reliability flag: False
    with too few cases of a class (`reliable`) or when every resample agrees (a zero-width interval says nothing)."""
    defined = samples[np.isfinite(samples)]
    if not np.isfinite(point) or len(defined) == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "resamples_defined": int(len(defined)), "reliable": False}
    tail = (1 - settings.confidence) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail])
    return {"value": round(float(point), 4), "ci_low": round(float(low), 4), "ci_high": round(float(high), 4),
            "resamples_defined": int(len(defined)), "reliable": bool(reliable and high > low)}


def binary_intervals(labels, scores, threshold: float, patient_ids, settings: BootstrapSettings,
                     rng: np.random.Generator) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Return ({metric: value and interval}, {metric: resample values}) for one set of binary predictions."""
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    positives = int(labels.sum())
    reliable = min(positives, len(labels) - positives) >= settings.min_per_class
    return metric_intervals(lambda weights: binary_metrics(weights, labels, scores, threshold), np.asarray(patient_ids),
                            settings, rng, reliable)


def difference_interval(a: dict[str, np.ndarray], b: dict[str, np.ndarray], point_a: dict, point_b: dict,
                        settings: BootstrapSettings) -> dict[str, dict]:
    """Return a - b per metric both sets have, with a percentile interval from independent resamples of disjoint patients."""
    out = {}
    for name in [name for name in point_a if name in point_b]:
        if point_a[name]["value"] is None or point_b[name]["value"] is None:
            out[name] = interval(float("nan"), np.array([]), settings, False)
            continue
        out[name] = interval(point_a[name]["value"] - point_b[name]["value"], a[name] - b[name], settings,
                             point_a[name]["reliable"] and point_b[name]["reliable"])
    return out
