"""The timing helpers the benchmarks' ratios rest on."""

import time

import pytest

from seld_edge.benchmark import time_calls_in_turns


def test_calls_are_timed_in_turns_and_each_gets_its_own_median() -> None:
    order: list[str] = []

    def call(name: str, seconds: float):
        def fn() -> None:
            order.append(name)
            time.sleep(seconds)

        return fn

    medians = time_calls_in_turns({"slow": call("slow", 0.02), "fast": call("fast", 0.0)}, rounds=4, warmup=1)
    assert order == ["slow"] + ["fast"] + ["slow", "fast"] * 4  # warm-ups first, then one of each per round
    assert set(medians) == {"slow", "fast"}
    assert medians["slow"] >= 0.02 > medians["fast"]


def test_ratios_read_as_faster_or_slower() -> None:
    from seld_edge.benchmark import speedup

    assert speedup(3.9, 1.0) == "3.9x faster"
    assert speedup(1.0, 1.0) == "1.0x faster"
    assert speedup(0.8, 1.0) == "0.8x (slower)"
    assert speedup(0.23, 1.0) == "0.23x (slower)"  # what `bench runtime` printed as "0.23x faster"
    assert speedup(46.0, 2.0) == "23.0x faster"


def _pools() -> dict[str, int]:
    from threadpoolctl import threadpool_info

    return {f"{p['internal_api']} {p['filepath']}": p["num_threads"] for p in threadpool_info()}


def test_one_core_pins_the_process_and_limits_every_pool_then_restores_both() -> None:
    import os

    from seld_edge.benchmark import one_core

    affinity, pools = os.sched_getaffinity(0), _pools()
    print("pools before:", pools, "cpus", sorted(affinity))
    assert pools, "numpy's BLAS pool is loaded"
    with one_core() as cpu:
        assert os.sched_getaffinity(0) == {cpu}
        inside = _pools()
        print("pools inside:", inside)
        assert set(inside.values()) == {1}
    assert os.sched_getaffinity(0) == affinity
    assert _pools() == pools


def _spy_on_turns(monkeypatch, module, medians: dict[str, float]) -> list[dict]:
    """Replace module.time_calls_in_turns: record what it was given (and the thread state while it runs),
    run every call once for real, and return the given medians."""
    import os

    seen: list[dict] = []

    def spy(fns, **_):
        import torch

        seen.append({"names": list(fns), "cpus": len(os.sched_getaffinity(0)), "pools": set(_pools().values()),
                     "torch_threads": torch.get_num_threads()})  # fmt: skip
        for fn in fns.values():
            fn()
        return {name: medians[name] for name in fns}

    monkeypatch.setattr(module, "time_calls_in_turns", spy)
    return seen


def test_bench_features_times_numpy_and_torch_in_turns_on_one_thread(monkeypatch) -> None:
    import torch

    import training.bench

    threads = torch.get_num_threads()
    seen = _spy_on_turns(monkeypatch, training.bench, {"numpy": 0.010, "torch": 0.039})
    try:
        lines = list(training.bench.bench_features(seconds=1.0))
    finally:
        torch.set_num_threads(threads)
    print("\n".join(lines))
    assert [s["names"] for s in seen] == [["numpy", "torch"]]
    assert seen[0]["cpus"] == 1 and seen[0]["pools"] == {1} and seen[0]["torch_threads"] == 1
    assert lines[-1] == "  numpy: 3.9x faster than the torch twin"


def test_bench_runtime_times_runtime_and_eager_in_turns_on_one_thread(monkeypatch) -> None:
    import torch

    import runtime.bench
    from seld_edge.benchmark import ASSETS
    from training.bench import bench_runtime

    threads = torch.get_num_threads()
    seen = _spy_on_turns(monkeypatch, runtime.bench, {"runtime": 0.100, "reference": 0.023})
    try:
        lines = list(bench_runtime(ASSETS / "seldnet_synth.onnx", ASSETS / "seldnet_synth", seconds=5.0))
    finally:
        torch.set_num_threads(threads)
    print("\n".join(lines))
    assert [s["names"] for s in seen] == [["runtime", "reference"]]
    assert seen[0]["cpus"] == 1 and seen[0]["pools"] == {1} and seen[0]["torch_threads"] == 1
    assert "  runtime: 0.23x (slower) than PyTorch eager end to end (target >= 3x)" in lines
    assert lines[-1].startswith("  streaming, 100 ms blocks: count 50,")


@pytest.mark.slow
def test_bench_scan_times_every_compared_pair_in_turns(monkeypatch) -> None:
    import torch

    import export.bench_scan
    from seld_edge.ops.selective_scan import selective_scan_chunked

    # The compiled flavour is the eager one here: torch.compile would take a minute, and the wording and the
    # pairing are under test, not the compiler.
    monkeypatch.setattr(
        export.bench_scan, "selective_scan_chunked", lambda *a, compiled=False: selective_scan_chunked(*a)
    )
    threads = torch.get_num_threads()
    medians = {"reference": 0.2, "eager": 0.05, "compiled": 0.02, "onnx": 0.1}
    seen = _spy_on_turns(monkeypatch, export.bench_scan, medians)
    try:
        lines = list(export.bench_scan.bench_selective_scan(length=128, with_model=False))
    finally:
        torch.set_num_threads(threads)
    print("\n".join(lines))
    assert [s["names"] for s in seen] == [["reference", "eager", "compiled"], ["onnx", "eager"]]
    assert all(s["cpus"] == 1 and s["pools"] == {1} and s["torch_threads"] == 1 for s in seen)
    assert "  compiled chunked scan: 10.0x faster than the reference (target >= 10x)" in lines
    assert lines[-1].endswith("  0.5x (slower) than the eager chunked form")
