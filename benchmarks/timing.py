"""Shared by the benchmark scripts: the median wall time of repeated calls."""

import statistics
import time


def median_seconds(function, runs: int, warmup: int = 0) -> float:
    """Return the median wall time of `function()` over `runs` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)
