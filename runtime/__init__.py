"""The torch-free runtime: exported models on ONNX Runtime, offline over files or streamed in blocks.

Needs only numpy, scipy, soundfile, onnxruntime, click and tqdm (design.md), so ``seld-edge run``
works on a Jetson without torch; a test runs it with torch made unimportable.
"""

from runtime.model import OnnxModel, load_model
from runtime.pipeline import run_files, stream_file, stream_files
from runtime.stream import FeatureStream, LabelFrame, LatencyStats, StreamingSeld

__all__ = [
    "FeatureStream",
    "LabelFrame",
    "LatencyStats",
    "OnnxModel",
    "StreamingSeld",
    "load_model",
    "run_files",
    "stream_file",
    "stream_files",
]
