"""Benchmarks that compare with PyTorch: the numpy features against their torch twin, and the runtime
against PyTorch eager end to end (runtime/bench.py with a reference run). Each works without torch
too, timing the torch-free side alone. The compared sides are timed in alternating rounds, on one core
with one thread per pool (seld_edge.benchmark)."""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from runtime.bench import Reference
from runtime.bench import bench_runtime as bench_runtime_only
from runtime.pipeline import Model, clip_events
from seld_edge.benchmark import one_core, speedup, time_calls_in_turns
from seld_edge.features import compute_features, feature_config


def bench_features(kind: str = "foa_logmel_iv", seconds: float = 60.0) -> Iterator[str]:
    """Yield report lines: numpy features x real time on one core, and vs the torch twin."""
    config = feature_config(kind)
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((config.in_channels, int(seconds * config.sample_rate)))).astype(np.float32)
    calls: dict[str, Callable[[], object]] = {"numpy": lambda: compute_features(audio, config)}
    try:
        import torch

        from training.frontend import FeatureExtractor
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(1)
        extractor = FeatureExtractor(config)
        batch = torch.from_numpy(audio)[None]

        def twin() -> object:
            with torch.inference_mode():
                return extractor(batch)

        calls["torch"] = twin
    with one_core() as cpu:
        medians = time_calls_in_turns(calls)
    numpy_s = medians["numpy"]
    yield f"features {kind}: {seconds:.0f} s of {config.in_channels}-ch audio on cpu {cpu}, one thread per pool"
    yield f"  numpy   {numpy_s * 1e3:8.1f} ms  {seconds / numpy_s:8.0f}x real time"
    if torch is None:
        yield "  torch   (not installed: no reference run)"
        return
    torch_s = medians["torch"]
    yield f"  torch   {torch_s * 1e3:8.1f} ms  {seconds / torch_s:8.0f}x real time"
    yield f"  numpy: {speedup(torch_s, numpy_s)} than the torch twin"


def eager_reference(checkpoint: str | Path) -> Reference:
    """PyTorch eager end to end for the runtime benchmark: the torch twin's features and the checkpoint's
    network, through the same windowing and post-processing, on one thread."""

    def reference(model: Model, audio: np.ndarray) -> tuple[str, Callable[[], object]]:
        import torch

        from training.checkpoint import load_checkpoint
        from training.frontend import FeatureExtractor
        from training.predict import TorchModel

        torch.set_num_threads(1)
        system, _ = load_checkpoint(checkpoint)
        twin = FeatureExtractor(model.metadata.feature_config)
        eager = TorchModel(system, model.metadata)
        name = model.metadata.inputs[0].name

        def run() -> object:
            with torch.inference_mode():
                features = twin(torch.from_numpy(audio)[None])[0].numpy()
            return clip_events(eager, {name: features})

        return "pytorch eager (torch twin + nn)", run

    return reference


def bench_runtime(model_path: str | Path, checkpoint: str | Path, seconds: float = 60.0) -> Iterator[str]:
    """The runtime benchmark with PyTorch eager as its reference where torch imports."""
    try:
        import torch  # noqa: F401
    except ImportError:
        yield from bench_runtime_only(model_path, seconds)
        return
    yield from bench_runtime_only(model_path, seconds, eager_reference(checkpoint))
