"""The timing helpers every benchmark shares (each layer owns its benchmarks: runtime/bench.py,
training/bench.py, export/bench_scan.py).

Timing follows Ultralytics' ProfileModels habits: warm up, repeat over a minimum window, report the
median so one slow outlier does not move the figure. Runs are pinned to one core
(os.sched_setaffinity) because the target is one Jetson-class core, not this machine's BLAS pool.
"""

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def time_call(fn: Callable[[], object], min_seconds: float = 1.0, warmup: int = 2, min_repeats: int = 5) -> float:
    """Median wall time of fn() in seconds."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def time_calls_in_turns(fns: dict[str, Callable[[], object]], rounds: int = 15, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each fn() in seconds, timed one after another round by round.

    For ratios between calls: a busy spell of a shared machine then slows every call alike instead of
    only the one timed during it (timed apart, one run in five of ``seld-edge bench scan`` put the
    compiled scan at 31 ms where other runs measured 21-23 ms).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def pin_to_one_core() -> int:
    """Restrict this process (and its BLAS threads) to one CPU; returns that CPU's index."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


ASSETS = Path(__file__).resolve().parent / "assets"
