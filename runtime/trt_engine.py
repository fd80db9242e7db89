"""A TensorRT engine as the runtime sees it: the same call as runtime.model.OnnxModel, for `seld-edge run
model.engine` and `seld-edge parity CHECKPOINT model.engine`.

Following TensorRT 10.x's samples (common_runtime.py): one deserialised engine, one execution context,
one pycuda stream, page-locked host buffers and device buffers bound by tensor name, set_input_shape /
set_tensor_address / execute_async_v3. Buffers are reused across calls and re-allocated only when a
longer clip needs more room. The engine's profile has batch 1 (a live stream runs one window at a
time); a batch of windows runs window by window.

tensorrt and pycuda are imported when an engine is loaded, never at import time: the plain runtime
install has neither.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.trt_sidecar import PLUGIN_ENV, Sidecar, gpu_name
from seld_edge.errors import SeldEdgeError
from seld_edge.io import file_sha256
from seld_edge.model_metadata import INPUT_NAME, ModelMetadata

PARITY_BOUNDS = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}  # max abs error against PyTorch (issue bounds)


@dataclass
class DeviceBuffer:
    """A page-locked host array and a device allocation of the same capacity, grown on demand."""

    dtype: np.dtype
    capacity: int = 0
    host: Any = None
    device: Any = None

    def ensure(self, elements: int) -> None:
        import pycuda.driver as cuda

        if elements <= self.capacity:
            return
        self.host = cuda.pagelocked_empty(elements, self.dtype)
        self.device = cuda.mem_alloc(max(self.host.nbytes, 1))
        self.capacity = elements


@dataclass
class TrtModel:
    """A loaded engine: call it with features (B, C, T, F) float32 to get its named outputs."""

    path: Path
    sidecar: Sidecar
    engine: Any
    context: Any
    stream: Any
    buffers: dict[str, DeviceBuffer] = field(default_factory=dict)
    keep_alive: tuple = ()  # the TensorRT logger and runtime the engine was made with

    @property
    def metadata(self) -> ModelMetadata:
        return self.sidecar.metadata

    @property
    def fixed_frames(self) -> int | None:
        return None  # the time axis is dynamic within the profile

    @property
    def parity_bound(self) -> float:
        return PARITY_BOUNDS[self.sidecar.precision]

    def __call__(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(features[INPUT_NAME], dtype=np.float32)
        low, high = self.sidecar.frame_range
        if not low <= batch.shape[2] <= high:
            raise SeldEdgeError(
                f"{self.path}: {batch.shape[2]} feature frames are outside the engine's profile ({low}-{high}); "
                "rebuild with other --min-seconds/--max-seconds"
            )
        results = [self._run(window[None]) for window in batch]
        return {name: np.concatenate([r[name] for r in results]) for name in self.metadata.output_names}

    def _run(self, window: np.ndarray) -> dict[str, np.ndarray]:
        import pycuda.driver as cuda

        self.context.set_input_shape(INPUT_NAME, window.shape)
        shapes = {name: tuple(self.context.get_tensor_shape(name)) for name in self.buffers}
        sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
        for name, buffer in self.buffers.items():
            buffer.ensure(sizes[name])
            self.context.set_tensor_address(name, int(buffer.device))
        # Copies move this call's elements only: a buffer grown for a longer clip keeps its capacity.
        source = self.buffers[INPUT_NAME].host[: window.size]
        np.copyto(source, window.ravel())
        cuda.memcpy_htod_async(self.buffers[INPUT_NAME].device, source, self.stream)
        if not self.context.execute_async_v3(stream_handle=self.stream.handle):
            raise SeldEdgeError(f"{self.path}: TensorRT failed to run the engine")
        outputs = {name: self.buffers[name].host[: sizes[name]] for name in self.buffers if name != INPUT_NAME}
        for name, host in outputs.items():
            cuda.memcpy_dtoh_async(host, self.buffers[name].device, self.stream)
        self.stream.synchronize()
        return {name: host.reshape(shapes[name]).astype(np.float32) for name, host in outputs.items()}


def plugin_library(sidecar: Sidecar) -> Path | None:
    """The plugin library to load before deserialising: SELD_SCAN_PLUGIN, else the one the build used."""
    if sidecar.plugin is None:
        return None
    return Path(os.environ.get(PLUGIN_ENV, sidecar.plugin)).expanduser()


def load_engine(path: str | Path) -> TrtModel:
    """Deserialise an engine after checking it against its sidecar (same engine, TensorRT, GPU)."""
    path = Path(path)
    if not path.is_file():
        raise SeldEdgeError(f"{path}: no such engine file")
    sidecar = Sidecar.read(path)
    try:
        import pycuda.autoinit  # noqa: F401 - the CUDA context of this process
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as err:
        raise SeldEdgeError(
            f"{path}: running a TensorRT engine needs the tensorrt and pycuda modules ({err}); "
            "on a Jetson: jetson/install.sh"
        ) from None
    sidecar.check(path, file_sha256(path), trt.__version__, gpu_name())
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    plugin = plugin_library(sidecar)
    if plugin is not None:
        if not plugin.is_file():
            raise SeldEdgeError(
                f"{path}: needs the SelectiveScan plugin library, not found at {plugin} (set {PLUGIN_ENV})"
            )
        if trt.get_plugin_registry().load_library(str(plugin)) is None:
            raise SeldEdgeError(f"{plugin}: TensorRT could not load the plugin library")
    trt_runtime = trt.Runtime(logger)
    engine = trt_runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise SeldEdgeError(f"{path}: TensorRT could not deserialise the engine")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    expected = {INPUT_NAME, *sidecar.metadata.output_names}
    if set(names) != expected:
        raise SeldEdgeError(f"{path}: engine tensors {sorted(names)} do not match its metadata's {sorted(expected)}")
    buffers = {name: DeviceBuffer(np.dtype(trt.nptype(engine.get_tensor_dtype(name)))) for name in names}
    context = engine.create_execution_context()
    return TrtModel(path, sidecar, engine, context, cuda.Stream(), buffers, (logger, trt_runtime))
