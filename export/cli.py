"""``seld-edge export``: seld_edge/cli.py registers :func:`export_command` with main.add_command.

Imports of torch and onnx stay inside the function so that ``seld-edge --help`` remains fast and
works on the torch-free runtime install.
"""

from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from export.trt_build import EngineOptions
    from seld_edge.model_metadata import ModelMetadata


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--opset", type=click.IntRange(18, 20), default=18, show_default=True, help="ONNX opset (18-20).")
@click.option(
    "--strict",
    is_flag=True,
    help="Write nothing and exit 2 if the TensorRT 10.3 check finds anything, errors and warnings alike.",
)
@click.option(
    "--scan",
    type=click.Choice(["onnx", "plugin"]),
    default=None,
    help="Mamba selective scans as standard ONNX ops (ONNX Runtime, TensorRT) or as one SelectiveScan "
    "node each for the TensorRT plugin (export/plugins/selective_scan/README.md). Default: plugin with --trt, "
    "onnx otherwise.",
)
@click.option(
    "--trt", is_flag=True, help="Also build a TensorRT engine (MODEL.engine), or build_engine.sh without TensorRT."
)
@click.option("--fp16", is_flag=True, help="--trt: allow FP16 kernels.")
@click.option("--int8", is_flag=True, help="--trt: INT8 with entropy calibration (needs --calib).")
@click.option("--calib", type=click.Path(file_okay=False, path_type=Path), help="--int8: audio folder to calibrate on.")
@click.option("--workspace", type=float, help="--trt: builder workspace in GB [default: 2].")
@click.option(
    "--min-seconds",
    type=float,
    default=None,
    help="Shortest clip the model accepts [ONNX: 1 s; engine: one label frame, for streaming].",
)
@click.option("--opt-seconds", type=float, help="--trt: clip length to tune for (default: the model's window).")
@click.option("--max-seconds", type=float, default=60.0, show_default=True, help="Longest clip the model accepts.")
@click.option(
    "--plugin", type=click.Path(dir_okay=False, path_type=Path), help="--trt: the SelectiveScan plugin library."
)
def export_command(
    checkpoint: Path,
    out: Path,
    opset: int,
    strict: bool,
    scan: str | None,
    trt: bool,
    fp16: bool,
    int8: bool,
    calib: Path | None,
    workspace: float | None,
    min_seconds: float | None,
    opt_seconds: float | None,
    max_seconds: float,
    plugin: Path | None,
) -> None:
    """Export CHECKPOINT to one self-contained ONNX file with its metadata, checked for TensorRT 10.3.

    CHECKPOINT is a checkpoint (.json/.safetensors) or a training run folder (its best checkpoint).
    The graph takes features (batch, C, T, F) float32 for any clip from --min-seconds to --max-seconds.
    Findings of the TensorRT check are printed one per line; without --strict the file is written anyway
    (ONNX Runtime runs such graphs), with --strict an error (a graph TensorRT cannot build) stops the export.

    With --trt the ONNX file is then built into MODEL.engine (with MODEL.engine.json, its sidecar) where
    the tensorrt module imports; elsewhere a build_engine.sh beside the ONNX file runs the equivalent
    trtexec on the device.
    """
    from seld_edge.errors import SeldEdgeError, require

    engine_only = {"--fp16": fp16, "--int8": int8, "--calib": calib, "--workspace": workspace,
                   "--opt-seconds": opt_seconds, "--plugin": plugin}  # fmt: skip
    given = [name for name, value in engine_only.items() if value is not None and value is not False]
    if given and not trt:
        raise SeldEdgeError(f"{', '.join(given)} only with --trt")
    for module in ("torch", "onnx", "onnxscript"):
        require(module, "export")
    from export.onnx_export import Exporter, ExportOptions, ExportResult
    from export.trt_build import EngineOptions

    engine_options = None
    if trt:  # checked before the slow export
        workspace = EngineOptions.workspace_gb if workspace is None else workspace
        engine_options = EngineOptions(fp16, int8, calib, workspace, min_seconds, opt_seconds, max_seconds, plugin)
    scan = scan or ("plugin" if trt else "onnx")
    onnx_min = ExportOptions.min_seconds if min_seconds is None else min_seconds
    options = ExportOptions(opset=opset, strict=strict, scan=scan, min_seconds=onnx_min, max_seconds=max_seconds)
    exporter = Exporter(checkpoint, options, log=lambda line: click.echo(line, err=True))
    result = exporter("onnx", out)
    click.echo(ExportResult.HEADER)
    click.echo(result.row)
    if engine_options is not None:
        _engine(out, exporter.metadata(), engine_options)


def _engine(onnx_path: Path, meta: "ModelMetadata", options: "EngineOptions") -> None:
    """The --trt step: the engine where tensorrt imports, otherwise build_engine.sh and one line saying so."""
    from export.trt_build import build_engine, plugin_nodes, resolve_plugin, tensorrt_available, write_build_script

    plugin = resolve_plugin(options, plugin_nodes(onnx_path) > 0)
    if tensorrt_available():
        engine = build_engine(onnx_path, meta, options, plugin, log=lambda line: click.echo(line, err=True))
        click.echo(f"engine  {engine.stat().st_size / 1e6:>6.1f} MB  {options.precision:<8}{engine}")
        return
    script = write_build_script(onnx_path, meta, options, plugin)
    click.echo(
        f"tensorrt does not import here: wrote {onnx_path.name} and {script}; run that script on the Jetson "
        f"to build {onnx_path.with_suffix('.engine').name}"
    )
