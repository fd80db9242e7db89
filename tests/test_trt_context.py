"""The TensorRT runtime's CUDA context and plugin handling, without a GPU or TensorRT.

A fake ``pycuda.driver`` records each call with the thread that made it and the context current on
that thread at the time; it moves no data. The TensorRT side is a recorder too (the execution
context's calls, the plugin registry's documented load_library behaviour). These tests check which
calls are made, in which order, on which thread and in which context: nothing here computes or
claims a result of TensorRT's. What only a GPU with TensorRT can show (an engine built, run from a
second thread, and the INT8 calibration) is not tested here.
"""

import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest

from export.trt_calibration import CalibrationFeed
from runtime.model import load_model
from runtime.trt_engine import (
    SCAN_CREATOR,
    CudaContext,
    DeviceBuffer,
    TrtModel,
    load_scan_plugin,
    require_tensorrt_10,
)
from runtime.trt_sidecar import Sidecar
from seld_edge.errors import SeldEdgeError
from seld_edge.model_metadata import INPUT_NAME

SHIPPED = Path(__file__).resolve().parents[1] / "seld_edge" / "assets" / "seldnet_synth.onnx"
PRIMARY = "primary context of device 0"


class Recorder:
    """(thread id, call, the context current on that thread) for every call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str | None]] = []
        self._local = threading.local()

    def stack(self) -> list[str]:
        if not hasattr(self._local, "contexts"):
            self._local.contexts = []
        return self._local.contexts

    def record(self, call: str) -> None:
        self.calls.append((threading.get_ident(), call, self.stack()[-1] if self.stack() else None))

    def names(self) -> list[str]:
        return [call for _, call, _ in self.calls]


def fake_pycuda(recorder: Recorder) -> types.ModuleType:
    """pycuda.driver as far as the runtime and the calibrator use it. No autoinit: importing
    pycuda.autoinit fails, as the package here is a plain module."""
    cuda = types.ModuleType("pycuda.driver")
    addresses = iter(range(0x1000, 1 << 40, 0x1000))

    class Context:
        def __init__(self, name: str) -> None:
            self.name = name

        def push(self) -> None:
            recorder.stack().append(self.name)
            recorder.record("push")

        @staticmethod
        def pop() -> None:
            recorder.record("pop")
            recorder.stack().pop()

    class Device:
        def __init__(self, ordinal: int) -> None:
            self.ordinal = ordinal

        def retain_primary_context(self) -> Context:
            recorder.record("retain_primary_context")
            return Context(f"primary context of device {self.ordinal}")

    class Stream:
        handle = 0xC0DE

        def __init__(self) -> None:
            recorder.record("Stream")

        def synchronize(self) -> None:
            recorder.record("synchronize")

    def call(name: str, result: object = None):
        def run(*args: object) -> object:
            recorder.record(name)
            return result(*args) if callable(result) else result

        return run

    cuda.init = call("init")
    cuda.Device, cuda.Context, cuda.Stream = Device, Context, Stream
    cuda.mem_alloc = call("mem_alloc", lambda nbytes: next(addresses))
    cuda.pagelocked_empty = call("pagelocked_empty", lambda n, dtype: np.zeros(n, dtype))
    cuda.memcpy_htod = call("memcpy_htod")
    cuda.memcpy_htod_async = call("memcpy_htod_async")
    cuda.memcpy_dtoh_async = call("memcpy_dtoh_async")
    return cuda


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    package = types.ModuleType("pycuda")
    package.driver = fake_pycuda(recorder)
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", package.driver)
    monkeypatch.delitem(sys.modules, "pycuda.autoinit", raising=False)
    return recorder


class RecordingExecutionContext:
    """The TensorRT execution-context calls TrtModel makes, recorded; get_tensor_shape answers with the
    output shape of SELDnet's graph (one label frame per 5 feature frames, 117 values) for the recorded
    input shape, and set_input_shape answers ``accept``."""

    def __init__(self, recorder: Recorder, accept: bool = True) -> None:
        self.recorder, self.accept, self.frames = recorder, accept, 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.recorder.record(f"set_input_shape {name}")
        self.frames = shape[2]
        return self.accept

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        self.recorder.record(f"get_tensor_shape {name}")
        return (1, self.frames // 5, 117)

    def set_tensor_address(self, name: str, address: int) -> None:
        self.recorder.record(f"set_tensor_address {name}")

    def execute_async_v3(self, stream_handle: int) -> bool:
        self.recorder.record("execute_async_v3")
        return True


def model_for(recorder: Recorder, tmp_path: Path, accept: bool = True) -> TrtModel:
    """A TrtModel around the recorders, made on this thread as load_engine makes one."""
    import pycuda.driver as cuda

    meta = load_model(SHIPPED).metadata
    profile = {"min": [1, 7, 5, 64], "opt": [1, 7, 250, 64], "max": [1, 7, 3000, 64]}
    sidecar = Sidecar(meta, "10.3.0", "Orin", "fp32", profile, None, 2.0, "0" * 64, "0" * 64)
    cuda_context = CudaContext(cuda)
    with cuda_context.current():
        stream = cuda.Stream()
    inputs = {INPUT_NAME: DeviceBuffer(np.dtype(np.float32))}
    outputs = {name: DeviceBuffer(np.dtype(np.float32)) for name in meta.output_names}
    context = RecordingExecutionContext(recorder, accept)
    return TrtModel(tmp_path / "m.engine", sidecar, None, context, stream, cuda_context, inputs, outputs)


def run_in_thread(function, *args):
    """function(*args) on a new thread (as an audio callback would call it); its result or its exception."""
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["result"] = function(*args)
        except Exception as err:  # handed back to the test's thread
            outcome["error"] = err

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    return outcome, worker.ident


def test_a_model_runs_from_another_thread_in_the_primary_context(recorder: Recorder, tmp_path: Path) -> None:
    model = model_for(recorder, tmp_path)
    assert recorder.names() == ["init", "retain_primary_context", "push", "Stream", "pop"]
    assert recorder.calls[3][2] == PRIMARY, "the stream is made in the primary context"
    loaded = len(recorder.calls)
    features = np.random.default_rng(0).standard_normal((2, 7, 50, 64)).astype(np.float32)
    outcome, worker = run_in_thread(model, {INPUT_NAME: features})
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"]["accdoa"].shape == (2, 10, 117)
    calls = recorder.calls[loaded:]
    assert {thread for thread, _, _ in calls} == {worker}, "every call of the run is made on the calling thread"
    window = [
        "set_input_shape features", "get_tensor_shape accdoa", "memcpy_htod_async", "set_tensor_address features",
        "set_tensor_address accdoa", "execute_async_v3", "memcpy_dtoh_async", "synchronize",
    ]  # fmt: skip
    first = ["set_input_shape features", "get_tensor_shape accdoa", "pagelocked_empty", "mem_alloc",
             "memcpy_htod_async", "set_tensor_address features", "pagelocked_empty", "mem_alloc",
             "set_tensor_address accdoa", "execute_async_v3", "memcpy_dtoh_async", "synchronize"]  # fmt: skip
    assert [c for _, c, _ in calls] == ["push", *first, "pop", "push", *window, "pop"], "buffers kept for window 2"
    inside = [(call, context) for _, call, context in calls if call not in ("push", "pop")]
    assert all(context == PRIMARY for _, context in inside), inside


def test_a_refused_input_shape_is_one_line_and_releases_the_context(recorder: Recorder, tmp_path: Path) -> None:
    model = model_for(recorder, tmp_path, accept=False)
    outcome, _ = run_in_thread(model, {INPUT_NAME: np.zeros((1, 7, 50, 64), np.float32)})
    assert isinstance(outcome["error"], SeldEdgeError)
    assert (
        str(outcome["error"]) == f"{tmp_path / 'm.engine'}: TensorRT refused input 'features' of shape (1, 7, 50, 64)"
    )
    assert recorder.names()[-3:] == ["push", "set_input_shape features", "pop"]
    assert not model.lock.locked()


def test_calibration_buffers_live_in_the_primary_context(recorder: Recorder) -> None:
    import pycuda.driver as cuda

    batches = iter([np.ones((1, 7, 250, 64), np.float32), np.zeros((1, 7, 250, 64), np.float32)])
    feed = CalibrationFeed(batches, cuda, CudaContext(cuda))
    made = len(recorder.calls)
    outcome, worker = run_in_thread(lambda: [feed.next_pointer() for _ in range(3)])
    first, second, done = outcome["result"]
    assert first == second == 0x1000 and done is None, "one device buffer, reused; None when exhausted"
    calls = recorder.calls[made:]
    assert [c for _, c, _ in calls] == ["push", "mem_alloc", "memcpy_htod", "pop", "push", "memcpy_htod", "pop"]
    assert all(thread == worker for thread, _, _ in calls)
    assert all(context == PRIMARY for _, call, context in calls if call not in ("push", "pop"))
    assert "pycuda.autoinit" not in sys.modules


class RecordingRegistry:
    """TensorRT's plugin registry as its 10.3 documentation describes it: load_library registers the
    library's creators, and returns None when they are registered already. ``registers``: whether the
    library holds the SelectiveScan creator."""

    def __init__(self, registers: bool = True) -> None:
        self.registers = registers
        self.creators: set[tuple[str, str, str]] = set()
        self.loads: list[str] = []

    def get_creator(self, name: str, version: str, namespace: str = "") -> object | None:
        return (name, version, namespace) if (name, version, namespace) in self.creators else None

    def load_library(self, path: str) -> object | None:
        self.loads.append(path)
        if SCAN_CREATOR in self.creators:
            return None
        if self.registers:
            self.creators.add(SCAN_CREATOR)
        return object()


def test_the_plugin_library_is_loaded_once_per_process(tmp_path: Path) -> None:
    library = tmp_path / "libseld_scan_plugin.so"
    library.write_bytes(b"")
    registry = RecordingRegistry()
    load_scan_plugin(registry, library)  # the engine build
    load_scan_plugin(registry, library)  # running that engine in the same process
    load_scan_plugin(registry, tmp_path / "elsewhere.so")  # a second engine naming another copy
    assert registry.loads == [str(library)]
    assert registry.load_library(str(library)) is None, "what a second load_library call would have answered"


def test_a_plugin_library_without_the_creator_or_missing_is_refused(tmp_path: Path) -> None:
    library = tmp_path / "libother.so"
    library.write_bytes(b"")
    with pytest.raises(SeldEdgeError, match="could not load a SelectiveScan plugin from this library"):
        load_scan_plugin(RecordingRegistry(registers=False), library)
    with pytest.raises(SeldEdgeError, match=r"SelectiveScan plugin library not found at .*missing.so"):
        load_scan_plugin(RecordingRegistry(), tmp_path / "missing.so")


@pytest.mark.parametrize("version", ["8.5.2.2", "8.6.2.3"])
def test_tensorrt_8_is_refused_in_one_line(version: str) -> None:
    with pytest.raises(
        SeldEdgeError, match=rf"^TensorRT {version}: seld-edge builds and runs engines with TensorRT 10"
    ):
        require_tensorrt_10(version)
    for supported in ("10.3.0.30", "10.13.3.9", "11.1.0"):
        require_tensorrt_10(supported)
