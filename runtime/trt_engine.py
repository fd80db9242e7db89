"""A TensorRT engine as the runtime sees it: the same call as runtime.model.OnnxModel, for `seld-edge run
model.engine` and `seld-edge parity CHECKPOINT model.engine`.

Following TensorRT 10.x's samples (common_runtime.py): one deserialised engine, one execution context,
one pycuda stream, page-locked host buffers and device buffers bound by tensor name, set_input_shape /
set_tensor_address / execute_async_v3. Buffers are reused across calls and re-allocated only when a
longer clip needs more room. The engine's profile has batch 1 (a live stream runs one window at a
time); a batch of windows runs window by window.

CUDA context: TensorRT works through the CUDA runtime API, which uses the device's primary context.
``import pycuda.autoinit`` would make a second context, current only on the importing thread, so a
stream fed from another thread (an audio capture callback) would find its buffers in a context that
is not current there. Here every piece of GPU work runs with the primary context pushed on the
calling thread (:class:`CudaContext`), and one lock serialises calls to a model, so any thread may
call it.

TensorRT 10 or later: 8.x's Python API differs (parser errors without node names, explicit-batch
networks, V2-only plugin lookups), so :func:`require_tensorrt_10` refuses it in one line; on 8.6 the
plugin's IPluginV2DynamicExt flavour and trtexec remain (export/plugins/selective_scan/README.md).

tensorrt and pycuda are imported when an engine is loaded, never at import time: the plain runtime
install has neither.
"""

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.trt_sidecar import PLUGIN_ENV, Sidecar, gpu_name
from seld_edge.errors import SeldEdgeError
from seld_edge.io import file_sha256
from seld_edge.model_metadata import ModelMetadata

PARITY_BOUNDS = {"fp32": 1e-3, "fp16": 1e-2, "int8": 5e-2}  # max abs error against PyTorch (issue bounds)
SCAN_CREATOR = ("SelectiveScan", "1", "")  # the plugin's name, version and namespace (its README)


def require_tensorrt_10(version: str) -> None:
    """Refuse TensorRT before 10 in one line: the build and run code follows the 10.x Python API."""
    if int(version.split(".")[0]) < 10:
        raise SeldEdgeError(
            f"TensorRT {version}: seld-edge builds and runs engines with TensorRT 10 or later (JetPack 6.1+); "
            "on 8.6 use trtexec and the plugin's IPluginV2DynamicExt build (export/plugins/selective_scan/README.md)"
        )


def load_scan_plugin(registry: Any, library: Path) -> None:
    """Register the SelectiveScan plugin of ``library`` with TensorRT's plugin registry, once per process.

    load_library returns None when the library's plugins are registered already (TensorRT 10.3's
    documentation), so a process that builds an engine and then runs it, or loads two scan engines,
    asks the registry for the creator first; a library that loads without registering it is refused.
    """
    if registry.get_creator(*SCAN_CREATOR) is not None:
        return
    if not library.is_file():
        raise SeldEdgeError(
            f"SelectiveScan plugin library not found at {library} (jetson/install.sh builds it; {PLUGIN_ENV} "
            "names another)"
        )
    if registry.load_library(str(library)) is None or registry.get_creator(*SCAN_CREATOR) is None:
        raise SeldEdgeError(f"{library}: TensorRT could not load a SelectiveScan plugin from this library")


class CudaContext:
    """The device's primary CUDA context (the CUDA runtime's, hence TensorRT's), retained for the life of
    the process; :meth:`current` makes it current on the calling thread for the duration of a block."""

    def __init__(self, cuda: Any, device: int = 0) -> None:
        cuda.init()
        self._cuda = cuda
        self._context = cuda.Device(device).retain_primary_context()

    @contextmanager
    def current(self) -> Iterator[None]:
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()


@dataclass
class DeviceBuffer:
    """A page-locked host array and a device allocation of the same capacity, grown on demand (with the
    CUDA context current)."""

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
    """A loaded engine: call it with features (B, C, T, F) float32 to get its named outputs.

    ``inputs`` and ``outputs`` hold a buffer for each of the engine's own I/O tensors, by name; a call
    feeds the inputs by name (:meth:`_feeds`), so an engine with several inputs needs only that method.
    Calls may come from any thread; they run one at a time.
    """

    path: Path
    sidecar: Sidecar
    engine: Any
    context: Any  # the TensorRT execution context
    stream: Any
    cuda_context: CudaContext
    inputs: dict[str, DeviceBuffer]
    outputs: dict[str, DeviceBuffer]
    keep_alive: tuple = ()  # the TensorRT logger and runtime the engine was made with
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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
        batches = {i.name: np.ascontiguousarray(features[i.name], dtype=np.float32) for i in self.metadata.inputs}
        frames = next(iter(batches.values())).shape[2]
        low, high = self.sidecar.frame_range
        if not low <= frames <= high:
            raise SeldEdgeError(
                f"{self.path}: {frames} feature frames are outside the engine's profile ({low}-{high}); "
                "rebuild with other --min-seconds/--max-seconds"
            )
        count = len(next(iter(batches.values())))
        results = [self._run(self._feeds(batches, item)) for item in range(count)]
        return {name: np.concatenate([r[name] for r in results]) for name in self.metadata.output_names}

    def _feeds(self, batches: Mapping[str, np.ndarray], item: int) -> dict[str, np.ndarray]:
        """The engine's input tensors, by name, for one window (item) of each input's batch."""
        return {name: batch[item : item + 1] for name, batch in batches.items()}

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pycuda.driver as cuda

        with self.lock, self.cuda_context.current():
            for name, array in feeds.items():
                if not self.context.set_input_shape(name, array.shape):
                    raise SeldEdgeError(f"{self.path}: TensorRT refused input {name!r} of shape {array.shape}")
            shapes = {name: tuple(self.context.get_tensor_shape(name)) for name in self.outputs}
            # Copies move this call's elements only: a buffer grown for a longer clip keeps its capacity.
            for name, array in feeds.items():
                buffer = self.inputs[name]
                buffer.ensure(array.size)
                source = buffer.host[: array.size]
                np.copyto(source, array.ravel())
                cuda.memcpy_htod_async(buffer.device, source, self.stream)
                self.context.set_tensor_address(name, int(buffer.device))
            for name, shape in shapes.items():
                self.outputs[name].ensure(int(np.prod(shape)))
                self.context.set_tensor_address(name, int(self.outputs[name].device))
            if not self.context.execute_async_v3(stream_handle=self.stream.handle):
                raise SeldEdgeError(f"{self.path}: TensorRT failed to run the engine")
            hosts = {name: self.outputs[name].host[: int(np.prod(shape))] for name, shape in shapes.items()}
            for name, host in hosts.items():
                cuda.memcpy_dtoh_async(host, self.outputs[name].device, self.stream)
            self.stream.synchronize()
        return {name: host.reshape(shapes[name]).astype(np.float32) for name, host in hosts.items()}


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
        import pycuda.driver as cuda
        import tensorrt as trt
    except ImportError as err:
        raise SeldEdgeError(
            f"{path}: running a TensorRT engine needs the tensorrt and pycuda modules ({err}); "
            "on a Jetson: jetson/install.sh"
        ) from None
    require_tensorrt_10(trt.__version__)
    sidecar.check(path, file_sha256(path), trt.__version__, gpu_name())
    cuda_context = CudaContext(cuda)
    logger = trt.Logger(trt.Logger.WARNING)
    with cuda_context.current():
        trt.init_libnvinfer_plugins(logger, "")
        plugin = plugin_library(sidecar)
        if plugin is not None:
            load_scan_plugin(trt.get_plugin_registry(), plugin)
        trt_runtime = trt.Runtime(logger)
        engine = trt_runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise SeldEdgeError(f"{path}: TensorRT could not deserialise the engine")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [name for name in names if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT]
        outputs = [name for name in names if name not in inputs]
        expected = sorted(i.name for i in sidecar.metadata.inputs)
        if sorted(inputs) != expected or set(outputs) != set(sidecar.metadata.output_names):
            raise SeldEdgeError(
                f"{path}: engine inputs {sorted(inputs)} and outputs {sorted(outputs)} do not match its metadata's "
                f"{expected} and {sorted(sidecar.metadata.output_names)}"
            )

        def buffers(tensors: list[str]) -> dict[str, DeviceBuffer]:
            return {name: DeviceBuffer(np.dtype(trt.nptype(engine.get_tensor_dtype(name)))) for name in tensors}

        context = engine.create_execution_context()
        stream = cuda.Stream()
    return TrtModel(
        path, sidecar, engine, context, stream, cuda_context, buffers(inputs), buffers(outputs), (logger, trt_runtime)
    )
