"""INT8 calibration for TensorRT 10.x: features of the calibration audio, fed to an entropy calibrator.

calibration_batches() is plain numpy (the runtime's own feature code), so what the calibrator sees is
tested without TensorRT. entropy_calibrator() follows TensorRT's Python samples (IInt8EntropyCalibrator2
with one device buffer, the cache read back on later builds) and imports tensorrt and pycuda itself;
its buffer lives in the device's primary context, the one TensorRT's builder works in, never in a
second context of pycuda.autoinit's (CalibrationFeed).
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runtime.trt_engine import CudaContext
from seld_edge.audio import find_audio_files
from seld_edge.errors import SeldEdgeError
from seld_edge.features import features_from_file
from seld_edge.io import atomic_write
from seld_edge.model_metadata import ModelMetadata

MAX_BATCHES = 256  # windows are enough to set activation ranges long before this


def calibration_batches(
    calib_dir: Path, meta: ModelMetadata, frames: int, limit: int = MAX_BATCHES
) -> Iterator[np.ndarray]:
    """(1, C, frames, F) float32 windows of the features of every audio file under calib_dir, in order,
    hopping a whole window; a clip shorter than one window is zero-padded. At most ``limit`` windows.

    Files are checked as `seld-edge run` checks them (rate, channels, length): a bad one stops with its name.
    """
    files = find_audio_files(calib_dir)
    count = 0
    for path in files:
        features = features_from_file(path, meta.feature_config)
        if features.shape[1] < frames:
            features = np.pad(features, ((0, 0), (0, frames - features.shape[1]), (0, 0)))
        for start in range(0, features.shape[1] - frames + 1, frames):
            yield np.ascontiguousarray(features[None, :, start : start + frames], dtype=np.float32)
            count += 1
            if count == limit:
                return
    if count == 0:
        raise SeldEdgeError(f"{calib_dir}: no calibration windows")


class CalibrationFeed:
    """The device side of the calibrator: each batch copied into one device buffer, allocated on first use.

    The work runs with the device's primary context current (runtime.trt_engine.CudaContext), the one
    TensorRT's builder uses, on whichever thread TensorRT calls from; ``cuda`` is pycuda.driver.
    """

    def __init__(self, batches: Iterator[np.ndarray], cuda: Any, context: CudaContext) -> None:
        self.batches = batches
        self.cuda = cuda
        self.context = context
        self.device: Any = None

    def next_pointer(self) -> int | None:
        """The device address of the next batch, None when the batches are exhausted."""
        batch = next(self.batches, None)
        if batch is None:
            return None
        with self.context.current():
            if self.device is None:
                self.device = self.cuda.mem_alloc(batch.nbytes)
            self.cuda.memcpy_htod(self.device, batch)
        return int(self.device)


def entropy_calibrator(batches: Iterator[np.ndarray], cache: Path) -> Any:
    """A tensorrt.IInt8EntropyCalibrator2 over ``batches``; its cache is written to (and reused from) ``cache``."""
    import pycuda.driver as cuda
    import tensorrt as trt

    feed = CalibrationFeed(batches, cuda, CudaContext(cuda))

    class FeatureCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            pointer = feed.next_pointer()
            return None if pointer is None else [pointer]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: bytes) -> None:
            atomic_write(cache, lambda handle: handle.write(memoryview(data)))

    return FeatureCalibrator()
