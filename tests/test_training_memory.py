"""Memory for training: free memory, the peak of a step, the batch size that fits, allocation failures."""

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from seld_edge.errors import SeldEdgeError  # noqa: E402
from training import memory  # noqa: E402
from training.memory import PeakMeter, fit_batch_size, free_bytes, is_out_of_memory  # noqa: E402

MB = 2**20
CPU = torch.device("cpu")
linux_only = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads Linux's /proc")


def holding(megabytes: float) -> None:
    """Hold (and touch) that much memory at once, then free it."""
    block = torch.ones(int(megabytes * MB) // 4)
    assert block.sum() > 0


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
    """The peak of a step that holds 200 MB, then of one that holds 60 MB: the second is not hidden by the
    first's peak (VmHWM is reset), and memory the allocator kept from the first is not counted twice."""
    meter = PeakMeter(CPU)
    big = meter.measure(lambda: holding(200))
    small = meter.measure(lambda: holding(60))
    print(f"measured {big / MB:.0f} MB for 200 MB, {small / MB:.0f} MB for 60 MB")
    assert 190 * MB <= big <= 240 * MB
    assert 55 * MB <= small <= 100 * MB


@linux_only
def test_auto_batch_takes_the_largest_batch_that_fits_and_the_limit_when_it_fits(monkeypatch):
    """A step of 20 MB + 40 MB per sample against 1 GB free: 60 % of it (614 MB) holds 14 samples."""
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1024 * MB)
    calls = []

    def step(batch: int) -> None:
        calls.append(batch)
        holding(20 + 40 * batch)

    fit = fit_batch_size(step, limit=64, device=CPU)
    print(fit.describe("max_batch_size 64"), calls)
    assert calls == [1, 2, 4, 8]
    assert 13 <= fit.batch_size <= 15
    assert 38 * MB <= fit.per_sample <= 44 * MB
    budget = r"0\.6 GB \(60% of the 1\.0 GB free\) at 0\.04 GB per sample"
    need = rf"batch size {fit.batch_size} \(auto: max_batch_size 64 would need 2\.[45] GB of {budget}\)"
    assert re.fullmatch(need, fit.describe("max_batch_size 64"))
    calls.clear()
    kept = fit_batch_size(step, limit=6, device=CPU)
    assert kept.batch_size == 6 and calls == [1, 2, 4], "the limit when it fits; nothing beyond it is tried"
    assert re.fullmatch(rf"batch size 6 \(auto: the card's 6 fits in {budget}\)", kept.describe("the card's 6"))


@linux_only
def test_probing_stops_at_an_allocation_failure_and_a_batch_of_one_that_fails_is_one_line(monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1024 * MB)
    tried = []

    def step(batch: int) -> None:
        tried.append(batch)
        if batch >= 4:
            raise allocation_failure()
        holding(10 * batch)

    assert fit_batch_size(step, limit=64, device=CPU).batch_size >= 2 and tried == [1, 2, 4]

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
