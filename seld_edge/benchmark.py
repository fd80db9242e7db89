"""Benchmarks that print ratios against a reference run in the same process.

Timing follows Ultralytics' ProfileModels habits: warm up, repeat over a minimum window, report the
median so one slow outlier does not move the figure. Runs are pinned to one core
(os.sched_setaffinity) because the target is one Jetson-class core, not this machine's BLAS pool.
"""

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from seld_edge.features import compute_features, feature_config


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


def bench_features(kind: str = "foa_logmel_iv", seconds: float = 60.0) -> Iterator[str]:
    """Yield report lines: numpy features x real time on one core, and vs the torch twin."""
    config = feature_config(kind)
    cpu = pin_to_one_core()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((config.in_channels, int(seconds * config.sample_rate)))).astype(np.float32)
    numpy_s = time_call(lambda: compute_features(audio, config))
    yield f"features {kind}: {seconds:.0f} s of {config.in_channels}-ch audio on cpu {cpu}"
    yield f"  numpy   {numpy_s * 1e3:8.1f} ms  {seconds / numpy_s:8.0f}x real time"
    try:
        import torch

        from training.frontend import FeatureExtractor
    except ImportError:
        yield "  torch   (not installed: no reference run)"
        return
    torch.set_num_threads(1)
    extractor = FeatureExtractor(config)
    batch = torch.from_numpy(audio)[None]
    with torch.inference_mode():
        torch_s = time_call(lambda: extractor(batch))
    yield f"  torch   {torch_s * 1e3:8.1f} ms  {seconds / torch_s:8.0f}x real time"
    yield f"  numpy is {torch_s / numpy_s:.2f}x the speed of the torch twin"


ASSETS = Path(__file__).resolve().parent / "assets"


def bench_runtime(
    model_path: str | Path = ASSETS / "seldnet_synth.onnx",
    checkpoint: str | Path = ASSETS / "seldnet_synth",
    seconds: float = 60.0,
) -> Iterator[str]:
    """Yield report lines: the runtime end to end against PyTorch eager end to end, and streaming.

    Both sides go from the same audio to events through the same windowing and post-processing
    (runtime.pipeline.clip_events); they differ in features (numpy vs the torch twin) and network
    (ONNX Runtime vs eager PyTorch), each on one thread of one core.
    """
    from runtime.model import load_model
    from runtime.pipeline import clip_events
    from runtime.stream import LatencyStats, StreamingSeld
    from seld_edge.synth import scene_audio

    cpu = pin_to_one_core()
    model = load_model(model_path, threads=1)
    meta, config = model.metadata, model.metadata.feature_config
    audio = scene_audio(config.in_channels, seconds)
    runtime_s = time_call(lambda: clip_events(model, compute_features(audio, config)))
    yield f"runtime {meta.model}: {seconds:.0f} s clip, audio -> events, on cpu {cpu}"
    backend = "TensorRT" if Path(model_path).suffix == ".engine" else "ONNX Runtime"
    yield f"  runtime (numpy + {backend:<12})  {runtime_s * 1e3:8.1f} ms  {seconds / runtime_s:7.0f}x real time"
    try:
        import torch

        from training.checkpoint import load_checkpoint
        from training.frontend import FeatureExtractor
        from training.predict import TorchModel
    except ImportError:
        yield "  pytorch eager                    (torch not installed: no reference run)"
    else:
        torch.set_num_threads(1)
        system, _ = load_checkpoint(checkpoint)
        twin = FeatureExtractor(config)
        eager = TorchModel(system, meta)

        def eager_end_to_end() -> object:
            with torch.inference_mode():
                features = twin(torch.from_numpy(audio)[None])[0].numpy()
            return clip_events(eager, features)

        eager_s = time_call(eager_end_to_end)
        yield f"  pytorch eager (torch twin + nn)  {eager_s * 1e3:8.1f} ms  {seconds / eager_s:7.0f}x real time"
        yield f"  runtime is {eager_s / runtime_s:.2f}x faster than PyTorch eager end to end (target >= 3x)"
    stats = LatencyStats()
    stream = StreamingSeld(meta, model, stats=stats)
    block = round(0.1 * config.sample_rate)
    for start in range(0, audio.shape[1], block):
        stream.push(audio[:, start : start + block])
    stream.finish()
    yield f"  streaming, 100 ms blocks: {stats.format()} (target mean < 10 ms)"
