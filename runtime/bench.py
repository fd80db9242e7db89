"""``seld-edge bench runtime``: the torch-free runtime end to end on one core, and streaming latency.

The runtime side goes from audio to events (numpy features, the model, windowing, post-processing);
a reference run from a higher layer (PyTorch eager, training/bench.py) can be passed in and is timed
on the same audio in alternating rounds, so the report gives their ratio.
"""

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from runtime.model import load_model
from runtime.pipeline import Model, clip_events
from runtime.stream import LatencyStats, StreamingSeld
from seld_edge.benchmark import one_core, speedup, time_calls_in_turns
from seld_edge.features import compute_features
from seld_edge.synth import scene_audio

Reference = Callable[[Model, np.ndarray], tuple[str, Callable[[], object]]]
"""Given the runtime model and the clip's audio: a label for the report and the call to time (which runs
PyTorch on one thread)."""


def bench_runtime(model_path: str | Path, seconds: float = 60.0, reference: Reference | None = None) -> Iterator[str]:
    """Yield report lines: the runtime end to end (against the reference run, when given), and streaming."""
    model = load_model(model_path, threads=1)
    meta, config = model.metadata, model.metadata.feature_config
    audio = scene_audio(config.audio_format, seconds)
    name = meta.inputs[0].name
    calls: dict[str, Callable[[], object]] = {
        "runtime": lambda: clip_events(model, {name: compute_features(audio, config)})
    }
    label = ""
    if reference is not None:
        label, calls["reference"] = reference(model, audio)
    with one_core() as cpu:
        medians = time_calls_in_turns(calls)
        yield f"runtime {meta.model}: {seconds:.0f} s clip, audio -> events, on cpu {cpu}, one thread per pool"
        backend = "TensorRT" if Path(model_path).suffix == ".engine" else "ONNX Runtime"
        runtime_s = medians["runtime"]
        yield f"  runtime (numpy + {backend:<12})  {runtime_s * 1e3:8.1f} ms  {seconds / runtime_s:7.0f}x real time"
        if reference is None:
            yield "  pytorch eager                    (torch not installed: no reference run)"
        else:
            reference_s = medians["reference"]
            yield f"  {label:<32} {reference_s * 1e3:8.1f} ms  {seconds / reference_s:7.0f}x real time"
            yield f"  runtime: {speedup(reference_s, runtime_s)} than PyTorch eager end to end (target >= 3x)"
        stats = LatencyStats()
        stream = StreamingSeld(meta, model, stats=stats)
        block = round(0.1 * config.sample_rate)
        for start in range(0, audio.shape[1], block):
            stream.push(audio[:, start : start + block])
        stream.finish()
        yield f"  streaming, 100 ms blocks: {stats.format()} (target mean < 10 ms)"
