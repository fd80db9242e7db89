"""``seld-edge export``: seld_edge/cli.py registers :func:`export_command` with main.add_command.

Imports of torch and onnx stay inside the function so that ``seld-edge --help`` remains fast and
works on the torch-free runtime install.
"""

from pathlib import Path

import click


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
    default="onnx",
    show_default=True,
    help="Mamba selective scans as standard ONNX ops (ONNX Runtime, TensorRT) or as one SelectiveScan "
    "node each for the TensorRT plugin (export/plugins/selective_scan/README.md).",
)
def export_command(checkpoint: Path, out: Path, opset: int, strict: bool, scan: str) -> None:
    """Export CHECKPOINT to one self-contained ONNX file with its metadata, checked for TensorRT 10.3.

    CHECKPOINT is a checkpoint (.json/.safetensors) or a training run folder (its best checkpoint).
    The graph takes features (batch, C, T, F) float32 for any clip from 1 s to 60 s. Findings of the
    TensorRT check are printed one per line; without --strict the file is written anyway (ONNX
    Runtime runs such graphs), with --strict an error (a graph TensorRT cannot build) stops the export.
    """
    from seld_edge.errors import require

    for module in ("torch", "onnx", "onnxscript"):
        require(module, "export")
    from export.onnx_export import Exporter, ExportOptions, ExportResult

    options = ExportOptions(opset=opset, strict=strict, scan=scan)
    result = Exporter(checkpoint, options, log=lambda line: click.echo(line, err=True))("onnx", out)
    click.echo(ExportResult.HEADER)
    click.echo(result.row)
