"""Checkpoint -> deployable model: one Exporter, one method per format, one options object.

In the spirit of Ultralytics' exporter (engine/exporter.py): formats are looked up by name in
:data:`FORMATS`; each ``export_<format>`` method is wrapped by :func:`_timed` so that it times itself,
reports one line ("onnx: 2.9 MB in 3.1 s", or how long it ran before an unexpected failure) and
re-raises; every call returns an :class:`ExportResult` row. Unlike it, nothing is installed and no
option is silently switched off.

An ONNX export reports five stages, one line each as it starts, since the slow ones take minutes for
the Mamba models (FFMamba: about two minutes on one core, mostly tracing): load, trace, optimise,
check, write.

The ONNX graph takes raw features (batch, C, T, F) float32 per input (``features``, or one per part of
a composite) with a dynamic batch and a dynamic time axis (1 s to 60 s by default, T a whole number of
label frames; a network whose card fixes its time axis takes exactly its window) and carries its
:class:`ModelMetadata` in metadata_props, so ``seld-edge run MODEL`` needs nothing else.
"""

import contextlib
import functools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

import onnx
import torch
from torch.export import Dim

from export.graph_check import Finding, check_for_tensorrt, refuse_if_strict
from export.selective_scan_onnx import SCAN_FLAVOURS, translation_table
from seld_edge.errors import SeldEdgeError, unknown_name
from seld_edge.io import atomic_write
from seld_edge.model_metadata import ModelMetadata
from training.checkpoint import checkpoint_metadata, load_checkpoint, resolve_checkpoint

OPSETS = range(18, 21)  # TensorRT 10.3 parses 9-20; the dynamo exporter writes 18 natively
STAGES = ("load", "trace", "optimise", "check", "write")
"""The stages of an ONNX export, in order; each is announced by :meth:`Exporter.stage`."""
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportFormat:
    """One row of the format table: the name users type, the file suffix, the Exporter method."""

    name: str
    suffix: str
    method: str


FORMATS: dict[str, ExportFormat] = {"onnx": ExportFormat("onnx", ".onnx", "export_onnx")}


@dataclass(frozen=True)
class ExportOptions:
    """Every export setting in one place; defaults are what the Jetson runtime expects."""

    opset: int = 18
    strict: bool = False  # refuse (write nothing) when the TensorRT check finds an error; warnings are only printed
    trt_version: str = "10.3"  # the TensorRT whose ONNX parser the graph is checked against
    min_seconds: float = 1.0  # shortest clip the graph accepts
    max_seconds: float = 60.0  # longest clip the graph accepts
    scan: str = "onnx"  # selective scans as standard ONNX ops, or as TensorRT plugin nodes ("plugin")

    def __post_init__(self) -> None:
        if self.opset not in OPSETS:
            raise SeldEdgeError(f"opset {self.opset} is not supported; use {OPSETS.start}-{OPSETS.stop - 1}")
        if not 0 < self.min_seconds <= self.max_seconds:
            raise SeldEdgeError(f"clip lengths must satisfy 0 < min ({self.min_seconds}) <= max ({self.max_seconds})")
        if self.scan not in SCAN_FLAVOURS:
            raise unknown_name("scan flavour", self.scan, SCAN_FLAVOURS)


@dataclass(frozen=True)
class ExportResult:
    """One row of the results table."""

    format: str
    file: Path
    size_bytes: int
    seconds: float
    findings: tuple[Finding, ...]

    HEADER = f"{'format':<8}{'size':>9}{'seconds':>9}  {'TensorRT check':<22}file"

    @property
    def summary(self) -> str:
        return f"{self.format}: {self.size_bytes / 1e6:.1f} MB in {self.seconds:.1f} s"

    @property
    def row(self) -> str:
        errors = sum(f.severity == "error" for f in self.findings)
        check = f"errors {errors}, warnings {len(self.findings) - errors}" if self.findings else "clean"
        return f"{self.format:<8}{self.size_bytes / 1e6:>6.1f} MB{self.seconds:>8.1f}s  {check:<22}{self.file}"


Method = TypeVar("Method", bound=Callable[..., tuple[Path, list[Finding]]])


def _timed(fmt: str) -> Callable[[Method], Callable[..., ExportResult]]:
    """Wrap an ``export_<fmt>`` method returning (file, findings): time it, report one line, re-raise."""

    def decorator(method: Method) -> Callable[..., ExportResult]:
        @functools.wraps(method)
        def wrapper(self: "Exporter", *args: Any, **kwargs: Any) -> ExportResult:
            start = time.perf_counter()
            try:
                file, findings = method(self, *args, **kwargs)
            except SeldEdgeError:
                raise  # the user's mistake: its own line says it all
            except Exception:
                self.log(f"{fmt}: failed after {time.perf_counter() - start:.1f} s")
                raise
            result = ExportResult(fmt, file, file.stat().st_size, time.perf_counter() - start, tuple(findings))
            self.log(result.summary)
            return result

        return wrapper

    return decorator


class Exporter:
    """Exports one checkpoint (file or run directory) to the formats of :data:`FORMATS`."""

    def __init__(
        self, checkpoint: str | Path, options: ExportOptions | None = None, log: Callable[[str], None] = logger.info
    ) -> None:
        self.log = log
        self.stem = resolve_checkpoint(checkpoint)
        self.stage("load", f"{self.stem.with_suffix('.json')}")
        self.system, self.meta = load_checkpoint(self.stem.with_suffix(".json"))
        if not self.system.format.decodable:
            raise SeldEdgeError(
                f"{checkpoint}: a {self.system.name} alone gives no events ({self.system.format.name} outputs only); "
                "compose it with its other part (seld-edge compose) and export that"
            )
        self.options = options or ExportOptions()

    def stage(self, name: str, detail: str) -> None:
        """One line as a stage of :data:`STAGES` starts: "[2/5] trace: ...", so a long export is never silent."""
        self.log(f"[{STAGES.index(name) + 1}/{len(STAGES)}] {name}: {detail}")

    def __call__(self, fmt: str, out: str | Path) -> ExportResult:
        if fmt not in FORMATS:
            raise unknown_name("export format", fmt, FORMATS)
        return getattr(self, FORMATS[fmt].method)(Path(out))

    def metadata(self) -> ModelMetadata:
        """What the runtime needs besides the graph, from the checkpoint and its training config."""
        return checkpoint_metadata(self.stem, self.system, self.meta)

    @_timed("onnx")
    def export_onnx(self, out: Path) -> tuple[Path, list[Finding]]:
        """One self-contained .onnx file, checked for TensorRT; with ``strict`` and findings, nothing is written.

        The temporary file is created before the slow export, so an unwritable path fails at once.
        """
        findings: list[Finding] = []

        def write(handle: IO[bytes]) -> None:
            model = self.onnx_model()
            findings.extend(check_for_tensorrt(model, self.options.trt_version))
            for finding in findings:
                self.log(str(finding))
            refuse_if_strict(findings, self.options.strict, str(out))
            self.stage("write", str(out))
            handle.write(model.SerializeToString())

        atomic_write(out, write)
        return out, findings

    def onnx_model(self) -> onnx.ModelProto:
        """The optimised, checked graph with metadata_props, in memory (weights inside, no .data file).

        Notes on torch 2.13's dynamo exporter:
        - nn.GRU/LSTM: torch.onnx swaps in a while_loop decomposition only while capturing the graph, but
          the decomposition pass after it re-traces aten.gru with the Python-loop kernel, which silently
          fixes the time axis to the example's length (the graph then fails on other lengths). Keeping
          the while_loop kernels registered around the whole export keeps the time axis symbolic; the
          RNNs are still written as ONNX GRU/LSTM nodes.
        - nn.MultiheadAttention's fast path is never taken under torch.export (it refuses while
          make_fx traces), so torch.backends.mha.set_fastpath_enabled(False) is not needed here; it
          matters for the TorchScript exporter only.
        """
        from torch.export._patches import register_gru_while_loop_decomposition, register_lstm_while_loop_decomposition

        meta = self.metadata()
        labels = Dim(
            "labels",
            min=math.ceil(self.options.min_seconds * meta.label_rate_hz),
            max=math.floor(self.options.max_seconds * meta.label_rate_hz),
        )
        dynamic_time = self.system.dynamic_time
        # Batch 2: an example dimension of size 1 would be specialised to 1 by torch.export.
        examples, dynamic_shapes = [], []
        batch = Dim("batch", min=1)
        for model_input in meta.inputs:
            config = model_input.feature_config
            examples.append(torch.randn(2, config.out_channels, meta.window_frames(model_input), config.n_bins))
            time_axis = labels * meta.frames_per_label(model_input) if dynamic_time else None
            dynamic_shapes.append({0: batch, 2: time_axis} if dynamic_time else {0: batch})
        clips = f"{self.options.min_seconds:g}-{self.options.max_seconds:g} s clips" if dynamic_time else (
            f"{meta.window_labels / meta.label_rate_hz:g} s windows")  # fmt: skip
        self.stage(
            "trace", f"{meta.model} with torch {torch.__version__.split('+')[0]} (opset {self.options.opset}, {clips})"
        )
        with register_gru_while_loop_decomposition(), register_lstm_while_loop_decomposition(), quiet_torch_export():
            program = torch.onnx.export(
                self.system,
                tuple(examples),
                input_names=[i.name for i in meta.inputs],
                output_names=list(self.system.output_names),
                opset_version=self.options.opset,
                dynamic_shapes=(tuple(dynamic_shapes),),  # forward(*features): one tensor per input
                external_data=False,
                optimize=False,  # the next stage, on its own line
                verbose=False,
                custom_translation_table=translation_table(self.options.scan),
            )
        self.stage("optimise", f"{len(program.model.graph)} nodes: constant folding, unused nodes")
        program.optimize()
        model = program.model_proto
        onnx.helper.set_model_props(model, meta.to_props())
        self.stage("check", f"{len(model.graph.node)} nodes: ONNX checker, TensorRT {self.options.trt_version} rules")
        onnx.checker.check_model(model, full_check=True)
        return model


@contextlib.contextmanager
def quiet_torch_export() -> Iterator[None]:
    """Silence what torch's exporter says about its own internals (deprecations inside torch, torchvision
    ops it skips, RNN weights it re-assigns, shared axis names): a user can act on none of it, and it
    buries the findings."""
    onnx_logger = logging.getLogger("torch.onnx")
    level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r"The tensor attributes .* were assigned during export")
            # One Dim shared by several inputs is named once; torch notes each other use.
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            yield
    finally:
        onnx_logger.setLevel(level)
