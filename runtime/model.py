"""An exported model as ONNX Runtime sees it: a session, its seld-edge metadata, a numpy call.

The metadata is read from the session itself (``custom_metadata_map``), so the runtime needs neither
torch nor the ``onnx`` package, only what a Jetson has. Execution providers: CPU by default; CUDA and
TensorRT only when the installed onnxruntime build has them and the user asks (``auto`` takes the
fastest one present). Session options follow docs/deployment.md: ORT_ENABLE_ALL, a configurable
intra-op thread count, and no spin-waiting, because on an edge CPU the audio capture and the feature
extraction share the cores with ONNX Runtime and a spinning thread pool would steal their time.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from runtime.onnx_weights import first_non_finite
from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.formats.label_rate import outputs_on_grid
from seld_edge.inference import checked_outputs
from seld_edge.model_metadata import ModelMetadata

if TYPE_CHECKING:
    from runtime.trt_engine import TrtModel

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
PROVIDERS = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT}
"""``--provider`` names and their ONNX Runtime execution providers; ``auto`` picks among them."""

# What ONNX Runtime raises for a file it cannot load (a missing or corrupt file, a graph it rejects) or a graph
# that fails on its input.
_LOAD_ERRORS = (
    ort_state.Fail,
    ort_state.InvalidArgument,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.NoModel,
    ort_state.NoSuchFile,
    ort_state.NotImplemented,
    ort_state.RuntimeException,
)


def execution_providers(provider: str, available: Sequence[str]) -> list[str]:
    """The ORT provider list for a ``--provider`` choice, CPU always last as the fallback for
    operators a GPU provider does not take.

    An explicit GPU choice the installed onnxruntime lacks is a user error (the plain
    ``onnxruntime`` wheel has CPU only), rather than a silent fall back to CPU.
    """
    if provider == "auto":
        return [p for p in (TENSORRT, CUDA) if p in available] + [CPU]
    if provider not in PROVIDERS:
        raise unknown_name("execution provider", provider, [*PROVIDERS, "auto"])
    if provider == "cpu":
        return [CPU]
    wanted = PROVIDERS[provider]
    if wanted not in available:
        raise SeldEdgeError(
            f"this onnxruntime has no {wanted} (available: {', '.join(available)}); "
            "install onnxruntime-gpu (or JetPack's onnxruntime) for GPU execution"
        )
    if provider == "tensorrt" and CUDA in available:
        return [TENSORRT, CUDA, CPU]  # CUDA takes the nodes TensorRT does not
    return [wanted, CPU]


def session_options(threads: int = 0) -> ort.SessionOptions:
    """ORT_ENABLE_ALL, ``threads`` intra-op threads (0: ORT's default, one per core), no spinning."""
    if threads < 0:
        raise SeldEdgeError(f"thread count must be 0 (ONNX Runtime's default) or positive, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


@dataclass(frozen=True)
class OnnxModel:
    """A loaded model: call it with feature batches (B, C, T, F) float32 by input name to get its outputs.

    T is any multiple of the input's frames per label frame (the window, for a graph with a fixed time
    axis); each output has T / frames_per_label frames. This is the :data:`seld_edge.inference.Network`
    callable that windowed inference and streaming use.
    """

    path: Path
    metadata: ModelMetadata
    session: ort.InferenceSession

    @property
    def fixed_frames(self) -> int | None:
        """The input's time axis when the graph fixes it (then it is the metadata's window), else None.

        Offline inference always feeds whole windows, so it runs such a graph; streaming needs
        shorter inputs at the start of a stream and refuses it.
        """
        frames = self.session.get_inputs()[0].shape[2]  # all inputs are fixed or none (the exporter's choice)
        return frames if isinstance(frames, int) else None

    @property
    def parity_bound(self) -> float:
        """Max abs error against PyTorch that `seld-edge parity` accepts for an ONNX Runtime model."""
        return 1e-4

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses (ORT drops those that fail to start)."""
        return self.session.get_providers()

    def __call__(self, features: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {i.name: np.ascontiguousarray(features[i.name], dtype=np.float32) for i in self.metadata.inputs}
        names = list(self.metadata.output_names)
        try:
            return dict(zip(names, self.session.run(names, feeds), strict=True))
        except _LOAD_ERRORS as err:  # a graph whose time axis is not as dynamic as its input says, a foreign graph
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            shapes = ", ".join(str(feed.shape) for feed in feeds.values())
            raise SeldEdgeError(
                f"{self.path}: the graph does not run on features of shape {shapes} ({reason})"
            ) from None


def load_model(path: str | Path, provider: str = "cpu", threads: int = 0) -> "OnnxModel | TrtModel":
    """Open an exported .onnx model (or a TensorRT .engine, runtime.trt_engine) and check that it is a
    seld-edge model this runtime can run. provider and threads are ONNX Runtime's.

    Errors a user can cause (a missing or non-ONNX file, a plain ONNX model without seld-edge metadata,
    a graph whose input or outputs do not match its metadata, an unavailable provider) raise
    SeldEdgeError with the file name.
    """
    path = Path(path)
    if path.suffix == ".engine":
        from runtime.trt_engine import load_engine

        return load_engine(path)
    if not path.is_file():
        raise SeldEdgeError(f"{path}: no such model file")
    providers = execution_providers(provider, ort.get_available_providers())
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(threads), providers=providers)
    except _LOAD_ERRORS as err:
        reason = str(err).splitlines()[0].split(" : ")[-1] if str(err) else type(err).__name__
        raise SeldEdgeError(f"{path}: not a loadable ONNX model ({reason})") from None
    if provider != "auto" and providers[0] not in session.get_providers():
        raise SeldEdgeError(
            f"{path}: {providers[0]} failed to start (CUDA/cuDNN/TensorRT libraries missing?); "
            "use --provider cpu or auto"
        )
    metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(path))
    _check_graph(path, session, metadata)
    _check_weights(path)
    model = OnnxModel(path, metadata, session)
    _check_outputs(model)
    return model


def _check_weights(path: Path) -> None:
    """Weights that are NaN or infinite (a diverged training run, a damaged file) would run and give no events."""
    try:
        name = first_non_finite(path)
    except ValueError as err:
        raise SeldEdgeError(f"{path}: not a loadable ONNX model ({err})") from None
    if name is not None:
        raise SeldEdgeError(f"{path}: weight {name!r} holds NaN or infinite values")


def _check_outputs(model: OnnxModel) -> None:
    """One window of silence through the graph: its outputs must have the metadata's frames and the shapes its
    output format decodes for its classes (a graph from elsewhere, or hand-edited metadata, fail here in one
    line rather than in a run)."""
    meta = model.metadata
    features = {
        i.name: np.zeros((1, i.feature_config.out_channels, meta.window_frames(i), i.feature_config.n_bins), np.float32)
        for i in meta.inputs
    }
    outputs = model(features)
    try:
        outputs = checked_outputs(outputs, meta, 1, finite=False)
        grid = outputs_on_grid({name: value[0] for name, value in outputs.items()}, meta.label_rate_hz)
        meta.postprocess.to_events(grid, meta.format, meta.num_classes)
    except (SeldEdgeError, ValueError) as err:
        raise SeldEdgeError(f"{model.path}: the graph's outputs do not fit its metadata ({err})") from None


def _check_graph(path: Path, session: ort.InferenceSession, metadata: ModelMetadata) -> None:
    """The graph must take the features the metadata describes and give the outputs it names."""
    inputs = {i.name: i for i in session.get_inputs()}
    expected_names = [i.name for i in metadata.inputs]
    if sorted(inputs) != sorted(expected_names):
        raise SeldEdgeError(
            f"{path}: the graph's inputs are {sorted(inputs)}, but its metadata describes {sorted(expected_names)}"
        )
    for model_input in metadata.inputs:
        shape = inputs[model_input.name].shape
        config = model_input.feature_config
        expected = (None, config.out_channels, None, config.n_bins)
        matches = len(shape) == 4 and all(
            not isinstance(s, int) or e is None or s == e for s, e in zip(shape, expected, strict=True)
        )
        if not matches:
            raise SeldEdgeError(
                f"{path}: input {model_input.name!r} has shape {shape}, but the metadata's {config.kind} features are "
                f"(batch, {config.out_channels}, frames, {config.n_bins})"
            )
        window = metadata.window_frames(model_input)
        if isinstance(shape[2], int) and shape[2] != window:
            raise SeldEdgeError(
                f"{path}: the graph fixes input {model_input.name!r} at {shape[2]} frames, but its window is {window}"
            )
    outputs = {o.name for o in session.get_outputs()}
    missing = [name for name in metadata.output_names if name not in outputs]
    if missing:
        raise SeldEdgeError(f"{path}: the metadata names outputs {missing} that the graph lacks")
