"""Memory for training: free memory, the peak of a step, the batch size that fits, allocation failures.

Real peaks are measured in a fresh process each: memory an earlier test's allocator kept would hide part
of them (rightly, for training: a model of it checks how probing handles that).
"""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from seld_edge.errors import SeldEdgeError  # noqa: E402
from training import memory  # noqa: E402
from training.memory import fit_batch_size, free_bytes, is_out_of_memory  # noqa: E402

MB = 2**20
CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[1]
linux_only = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads Linux's /proc")

PRELUDE = """
import json, torch
from training import memory
from training.memory import PeakMeter, fit_batch_size
MB = 2**20
CPU = torch.device("cpu")

def holding(megabytes):
    block = torch.ones(int(megabytes * MB) // 4)
    assert block.sum() > 0
"""


def isolated(code: str) -> object:
    """Run code after PRELUDE in a fresh Python process; what it prints last, as JSON."""
    script = PRELUDE + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def allocation_failure() -> RuntimeError:
    """A genuine failure of the CPU allocator (a petabyte), as training meets it."""
    try:
        torch.empty(2**50, dtype=torch.uint8)
    except RuntimeError as err:
        return err
    raise AssertionError("a petabyte was allocated")


@linux_only
def test_free_memory_on_a_cpu_is_memavailable():
    text = Path("/proc/meminfo").read_text()
    expected = int(re.search(r"MemAvailable:\s+(\d+) kB", text).group(1)) * 1024
    free = free_bytes(CPU)
    print(f"free {free / 2**30:.2f} GB, MemAvailable {expected / 2**30:.2f} GB")
    assert abs(free - expected) < 0.05 * expected


@linux_only
def test_each_step_is_measured_from_one_baseline():
    """A step holding 200 MB, then one holding 60: the second is not hidden by the first's peak (VmHWM is
    reset before each step)."""
    measured = isolated("""
        meter = PeakMeter(CPU)
        print(json.dumps([meter.measure(lambda: holding(mb)) / MB for mb in (200, 60)]))
    """)
    print(f"measured (MB) for steps of 200 and 60 MB: {measured}")
    assert 195 <= measured[0] <= 230 and 58 <= measured[1] <= 90


@linux_only
def test_auto_batch_takes_the_largest_batch_that_fits_and_the_limit_when_it_fits():
    """A step of 20 MB + 40 MB per sample against 1 GB free: 60 % of it (614 MB) holds 14 samples."""
    batch, per_sample, kept, calls, lines = isolated("""
        memory.free_bytes = lambda device: 1024 * MB
        calls = []

        def step(batch):
            calls.append(batch)
            holding(20 + 40 * batch)

        fit = fit_batch_size(step, limit=64, device=CPU)
        kept = fit_batch_size(step, limit=6, device=CPU)
        lines = [fit.describe("max_batch_size 64"), kept.describe("the card's 6")]
        print(json.dumps([fit.batch_size, fit.per_sample / MB, kept.batch_size, calls, lines]))
    """)
    print(lines, calls)
    assert 13 <= batch <= 15 and 38 <= per_sample <= 44
    assert kept == 6 and calls == [1, 2, 4, 8, 1, 2, 4], "the limit when it fits; nothing beyond it is tried"
    budget = r"0\.6 GB \(60% of the 1\.0 GB free\) at 0\.04 GB per sample"
    assert re.fullmatch(rf"batch size {batch} \(auto: max_batch_size 64 would need 2\.[45] GB of {budget}\)", lines[0])
    assert re.fullmatch(rf"batch size 6 \(auto: the card's 6 fits in {budget}\)", lines[1])


def test_batches_double_until_two_steps_reach_beyond_the_memory_the_allocator_kept(monkeypatch):
    """An allocator that kept 300 MB free from earlier work: steps needing less add nothing to the
    peak, so batches 1-4 (60-180 MB) measure 0 and their difference says nothing. Probing doubles until
    two steps (8: 340 MB, 16: 660 MB) both reach beyond it; their difference is 40 MB per sample, and
    the 300 MB already held need not come from the 614 MB budget: (614 + 280) / 40 = 22."""
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1024 * MB)
    monkeypatch.setattr(memory.PeakMeter, "available", True, raising=False)
    monkeypatch.setattr(memory.PeakMeter, "__init__", lambda self, device: None)
    monkeypatch.setattr(memory.PeakMeter, "measure", lambda self, step: max(0, step() - 300 * MB))
    tried = []

    def step(batch: int) -> int:
        tried.append(batch)
        return (20 + 40 * batch) * MB

    fit = fit_batch_size(step, limit=64, device=CPU)
    print(f"probes {tried}: batch {fit.batch_size}, {fit.per_sample / MB:.0f} MB per sample")
    assert tried == [1, 2, 4, 8, 16] and fit.per_sample == 40 * MB and fit.batch_size == 22


def test_probing_stops_at_an_allocation_failure_and_a_batch_of_one_that_fails_is_one_line(monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1024 * MB)
    monkeypatch.setattr(memory.PeakMeter, "measure", lambda self, step: step() or 0)
    tried = []

    def step(batch: int) -> None:
        tried.append(batch)
        if batch >= 4:
            raise allocation_failure()

    memory.fit_batch_size(step, limit=64, device=CPU)
    assert tried == [1, 2, 4]

    def never_fits(batch: int) -> None:
        raise allocation_failure()

    with pytest.raises(SeldEdgeError, match="a batch of 1 does not fit in memory: lower chunk_seconds"):
        fit_batch_size(never_fits, limit=64, device=CPU)


def test_allocation_failures_are_told_apart_from_other_errors():
    assert is_out_of_memory(allocation_failure())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x3 and 4x3)"))
    assert not is_out_of_memory(ValueError("can't allocate memory"))
