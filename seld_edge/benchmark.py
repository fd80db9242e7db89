"""The timing helpers every benchmark shares (each layer owns its benchmarks: runtime/bench.py,
training/bench.py, export/bench_scan.py).

Timing follows Ultralytics' ProfileModels habits: warm up, repeat, report the median so one slow
outlier does not move the figure. Compared calls are timed in turns (:func:`time_calls_in_turns`), and
every run happens inside :func:`one_core`: the process pinned to one CPU and every thread pool it has
loaded limited to one thread, because the target is one Jetson-class core. Pinning alone is not enough:
numpy's OpenBLAS, like any OpenMP pool, still starts a thread per core of the machine, and on a pinned
process those threads take turns on the one core (measured: the runtime benchmark printed 0.23x for what
is 3.9x with the pool limited).
"""

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits


def timings_in_turns(fns: dict[str, Callable[[], object]], rounds: int = 15, warmup: int = 2) -> dict[str, list[float]]:
    """Wall times of each fn() in seconds, one per round, timed one after another round by round.

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
    return times


def time_calls_in_turns(fns: dict[str, Callable[[], object]], rounds: int = 15, warmup: int = 2) -> dict[str, float]:
    """Median wall time of each fn() in seconds, timed in turns (:func:`timings_in_turns`)."""
    return {name: float(np.median(t)) for name, t in timings_in_turns(fns, rounds, warmup).items()}


@contextlib.contextmanager
def one_core() -> Iterator[int]:
    """Run the block on one CPU with one thread per pool; yields that CPU's index, restores both on exit.

    The pools are those loaded when the block starts (threadpoolctl limits what it finds: OpenBLAS, MKL,
    OpenMP), so enter it after the libraries under test are imported. PyTorch's intra-op pool and ONNX
    Runtime's are set by their own calls (``torch.set_num_threads(1)``, ``intra_op_num_threads = 1``).
    """
    previous = os.sched_getaffinity(0)
    cpu = min(previous)
    os.sched_setaffinity(0, {cpu})
    try:
        with threadpool_limits(limits=1):
            yield cpu
    finally:
        os.sched_setaffinity(0, previous)


def speedup(baseline_s: float, candidate_s: float) -> str:
    """How much faster the candidate is than the baseline, in words: "3.9x faster" or "0.8x (slower)".

    One wording for every benchmark, so that a ratio below 1 never reads as a speed-up ("0.23x faster").
    """
    ratio = baseline_s / candidate_s
    return f"{ratio:.1f}x faster" if ratio >= 1.0 else f"{ratio:.2g}x (slower)"


ASSETS = Path(__file__).resolve().parent / "assets"
