"""Memory for training: what is free, what a step takes at its peak, the batch size that fits
(``batch_size=auto``), and allocation failures told apart from other errors.

``batch_size=auto`` works like Ultralytics' ``batch=-1``: one forward and backward pass is measured at
growing batch sizes (1, 2, 4, 8, more while the allocator's free memory hides the growth; never above
the largest wanted), the peak memory is taken as a fixed part plus a part per sample, and the batch is
the largest whose predicted peak fits AUTO_BATCH_FRACTION of the memory free before the measurement:
MemAvailable from /proc/meminfo on a CPU (the memory Linux can give without swapping),
``torch.cuda.mem_get_info`` on a GPU. The fraction leaves room for the optimizer's state, the data
loader, validation and other programs.
"""

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from seld_edge.errors import SeldEdgeError

AUTO_BATCH_FRACTION = 0.6  # Ultralytics' default share of the free memory
PROBE_UP_TO = 8  # batches 1, 2, 4, 8: a CPU measures FFMamba's step at 8 in about 10 s; larger adds little


def is_out_of_memory(err: BaseException) -> bool:
    """An allocation failure: CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, numpy's MemoryError."""
    if isinstance(err, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def free_bytes(device: torch.device) -> int | None:
    """Memory free for this process on device, or None where it cannot be read (a CPU outside Linux)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


class PeakMeter:
    """The most memory a call holds at once, above what the process held when the meter was made.

    On a GPU, torch's allocated bytes and their peak. On a CPU, the resident size and its peak (VmHWM),
    the peak reset before each call through /proc/self/clear_refs (Linux). Memory the allocator keeps
    from earlier calls stays resident and is reused, so each call is measured from the one baseline,
    not from what it finds resident. ``available`` is False where this cannot be measured.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.available = device.type == "cuda" or (Path("/proc/self/statm").exists() and _reset_resident_peak())
        if self.available:
            self.baseline = self._current()

    def _current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def measure(self, step: Callable[[], None]) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            step()
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.baseline
        _reset_resident_peak()
        step()
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) * 1024 - self.baseline


def _reset_resident_peak() -> bool:
    """VmHWM := the current resident size; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class BatchFit:
    """The batch size chosen and what it was chosen from (bytes)."""

    batch_size: int
    limit: int
    free: int | None = None
    budget: float | None = None
    per_sample: float | None = None
    fixed: float | None = None
    reason: str = ""

    def predicted(self, batch_size: int) -> float:
        return self.fixed + self.per_sample * batch_size

    def describe(self, limit_name: str) -> str:
        """One line for the training log: the choice, and the measurement and budget it came from."""
        if self.per_sample is None:
            return f"batch size {self.batch_size} ({limit_name}; {self.reason})"
        gb = 1 / 2**30
        budget = f"{self.budget * gb:.1f} GB ({AUTO_BATCH_FRACTION:.0%} of the {self.free * gb:.1f} GB free)"
        rate = f"{self.per_sample * gb:.2f} GB per sample"
        if self.batch_size == self.limit:
            return f"batch size {self.batch_size} (auto: {limit_name} fits in {budget} at {rate})"
        need = self.predicted(self.limit) * gb
        return f"batch size {self.batch_size} (auto: {limit_name} would need {need:.1f} GB of {budget} at {rate})"


def fit_batch_size(step: Callable[[int], None], limit: int, device: torch.device, share_with: int = 1) -> BatchFit:
    """The largest batch size up to ``limit`` whose step(batch_size) fits the memory budget.

    step(b) runs one forward and backward pass at batch b and frees what it made. The budget is
    AUTO_BATCH_FRACTION of the free memory, split between ``share_with`` processes that share it (the
    ranks of a machine's CPU training). Without a way to measure, the answer is ``limit``.
    """
    free = free_bytes(device)
    meter = PeakMeter(device)
    if free is None or not meter.available:
        return BatchFit(limit, limit, reason="free or used memory cannot be read here")
    budget = AUTO_BATCH_FRACTION * free / share_with
    measured: dict[int, int] = {}
    batch = 1
    while batch <= limit and not (measured and _predicted(measured, batch) > budget):
        try:
            measured[batch] = meter.measure(lambda b=batch: step(b))
        except (RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            break
        if batch >= PROBE_UP_TO and _beyond_what_was_free(measured):
            break
        batch *= 2
    if not measured:
        raise SeldEdgeError("batch_size=auto: a batch of 1 does not fit in memory: lower chunk_seconds")
    per_sample, fixed = _linear(measured)
    fits = math.floor((budget - fixed) / per_sample) if per_sample > 0 else limit
    return BatchFit(max(1, min(limit, fits)), limit, free, budget, per_sample, fixed)


def _beyond_what_was_free(measured: dict[int, int]) -> bool:
    """Whether the two largest steps both needed memory beyond what the process held but had free.

    An allocator keeps freed memory (glibc's heap, torch's CUDA cache) and a step that fits in it adds
    nothing to the peak: measured from one baseline, a step is need - free-but-held when that is
    positive and about 0 otherwise. The difference of two steps is then the memory per sample only when
    both are beyond it; until then the batches keep doubling.
    """
    sizes = sorted(measured)
    return len(sizes) >= 2 and measured[sizes[-2]] > 0.02 * measured[sizes[-1]]


def _predicted(measured: dict[int, int], batch: int) -> float:
    per_sample, fixed = _linear(measured)
    return fixed + per_sample * batch


def _linear(measured: dict[int, int]) -> tuple[float, float]:
    """(bytes per sample, fixed bytes) through the two largest measured batches (one: all per sample)."""
    sizes = sorted(measured)
    if len(sizes) == 1:
        return measured[sizes[0]] / sizes[0], 0.0
    small, large = sizes[-2:]
    per_sample = max(0.0, (measured[large] - measured[small]) / (large - small))
    return per_sample, measured[large] - per_sample * large
