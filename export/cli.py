"""The export layer's commands: ``export``, ``parity`` and ``bench scan``.

:func:`register` adds them to the main group through the ``seld_edge.commands`` entry point. Imports
of torch and onnx stay inside the functions so that ``seld-edge --help`` remains fast and works on the
torch-free runtime install.
"""

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from export.trt_build import EngineOptions  # torch-free, like everything imported here at module level
from seld_edge.errors import SeldEdgeError, require, unknown_name
from seld_edge.metrics import METRICS

if TYPE_CHECKING:
    from seld_edge.model_metadata import ModelMetadata


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .onnx file."
)
@click.option("--opset", type=click.IntRange(18, 20), default=18, show_default=True, help="ONNX opset (18-20).")
@click.option(
    "--strict",
    is_flag=True,
    help="Write nothing and exit 2 if the TensorRT 10.3 check finds an error (a graph TensorRT cannot build); "
    "warnings are printed and the file is written.",
)
@click.option(
    "--scan",
    type=click.Choice(["onnx", "plugin"]),
    default=None,
    show_default="plugin with --trt, onnx otherwise",
    help="Mamba selective scans as standard ONNX ops (ONNX Runtime, TensorRT) or as one SelectiveScan "
    "node each for the TensorRT plugin (export/plugins/selective_scan/README.md).",
)
@click.option(
    "--trt", is_flag=True, help="Also build a TensorRT engine (MODEL.engine), or build_engine.sh without TensorRT."
)
@click.option("--fp16", is_flag=True, help="--trt: allow FP16 kernels.")
@click.option("--int8", is_flag=True, help="--trt: INT8 with entropy calibration (needs --calib).")
@click.option("--calib", type=click.Path(file_okay=False, path_type=Path), help="--int8: audio folder to calibrate on.")
@click.option(
    "--workspace", type=float, show_default=f"{EngineOptions.workspace_gb:g}", help="--trt: builder workspace in GB."
)
@click.option(
    "--min-seconds",
    type=float,
    default=None,
    show_default="ONNX: 1 s; engine: one label frame, for streaming",
    help="Shortest clip the model accepts.",
)
@click.option("--opt-seconds", type=float, show_default="the model's window", help="--trt: clip length to tune for.")
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
    engine_only = {"--fp16": fp16, "--int8": int8, "--calib": calib, "--workspace": workspace,
                   "--opt-seconds": opt_seconds, "--plugin": plugin}  # fmt: skip
    given = [name for name, value in engine_only.items() if value is not None and value is not False]
    if given and not trt:
        raise SeldEdgeError(f"{', '.join(given)} only with --trt")
    for module in ("torch", "onnx", "onnxscript"):
        require(module, "export")
    from export.onnx_export import Exporter, ExportOptions, ExportResult

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


def _engine(onnx_path: Path, meta: "ModelMetadata", options: EngineOptions) -> None:
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


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Data set: also compare end to end.")
@click.option(
    "--metric", type=click.Choice(METRICS), default="dcase2023", show_default=True, help="DCASE metric (--data)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def parity(checkpoint: Path, model: Path, data: Path | None, metric: str, as_json: bool) -> None:
    """PyTorch (CHECKPOINT) against the runtime (MODEL) on the same audio: errors per output.

    Each side runs with its own metadata (the model file's, the checkpoint's), and the two are compared
    field by field first: a model file whose metadata differ where outputs depend on them is refused.
    Without --data a generated scene is used and only outputs and features are compared; with
    --data the held-out clips also go end to end to DCASE events and scores (delta SELD).
    """
    require("torch", "train")
    from export.parity import DELTA_SELD_BOUND, compare, data_clips, generated_clip, within_bounds
    from runtime.model import load_model
    from seld_edge.model_metadata import metadata_differences
    from training.checkpoint import checkpoint_metadata, load_checkpoint, resolve_checkpoint

    system, checkpoint_json = load_checkpoint(checkpoint)
    torch_meta = checkpoint_metadata(resolve_checkpoint(checkpoint), system, checkpoint_json)
    runtime = load_model(model)
    meta = runtime.metadata
    if meta.model != system.name or meta.checkpoint_sha256 != torch_meta.checkpoint_sha256:
        raise SeldEdgeError(f"{model} was not exported from {checkpoint} (model {meta.model}, other weights)")
    differences = metadata_differences(meta, torch_meta)
    if differences:
        shown = "; ".join(f"{field} {ours!r} here, {theirs!r} in the checkpoint" for field, ours, theirs in differences)
        raise SeldEdgeError(f"{model}: its metadata differ from its checkpoint's where outputs depend on them: {shown}")
    clips = data_clips(data, meta) if data is not None else [generated_clip(meta)]
    if not clips:
        raise SeldEdgeError(f"{data}: no labelled held-out (test) clips to compare on")
    report = compare(system, torch_meta, runtime, clips, metric)
    report["bounds"] = {"max_abs_error": runtime.parity_bound, "delta_seld": DELTA_SELD_BOUND}
    report["within_bounds"] = within_bounds(report, runtime.parity_bound)
    if as_json:
        click.echo(json.dumps(report))
    else:
        _print_parity(report, meta.model, len(clips), metric)
    if not report["within_bounds"]:
        click.echo(
            f"parity: outside the bounds (max abs error <= {runtime.parity_bound:g}, "
            f"|delta SELD| <= {DELTA_SELD_BOUND})",
            err=True,
        )
        raise SystemExit(1)


def _print_parity(report: dict[str, Any], model: str, clips: int, metric: str) -> None:
    click.echo(f"parity {model}: {clips} clip(s); features max abs error {report['feature_max_abs_error']:.2e}")
    click.echo(f"  {'output':<10}{'max abs':>12}{'p99 abs':>12}{'max rel':>12}")
    for name, stats in report["outputs"].items():
        click.echo(
            f"  {name:<10}{stats['max_abs_error']:>12.2e}{stats['p99_abs_error']:>12.2e}{stats['max_rel_error']:>12.2e}"
        )
    if report["delta_seld"] is not None:
        click.echo(
            f"  end to end ({metric}): |delta SELD| {report['delta_seld']:.4f}, |delta F| {report['delta_f']:.4f}, "
            f"{report['differing_detections']} differing detections"
        )


@click.command("scan")
@click.option("--length", type=click.IntRange(min=1), show_default="a 5 s first stage", help="Scan length L.")
@click.option("--no-model", is_flag=True, help="Skip exporting and timing the whole FFMamba (about a minute).")
def bench_scan_command(length: int | None, no_model: bool) -> None:
    """Selective scan and FFMamba on one core: chunked vs sequential, ONNX flavour, 5 s clip latency."""
    require("torch", "train")
    from export.bench_scan import bench_selective_scan

    for line in bench_selective_scan(length=length, with_model=not no_model):
        click.echo(line)


@click.command("zoo")
@click.option(
    "--models", "names", multiple=True,
    help="Models to include (repeat, or comma-separated); every registered one when none is given.",
)  # fmt: skip
@click.option("--seconds", type=click.FloatRange(min=1.0), default=5.0, show_default=True, help="Clip length.")
@click.option(
    "-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("bench_zoo"),
    show_default=True, help="Folder for zoo.csv, zoo.md, zoo.json and zoo.png.",
)  # fmt: skip
@click.option("--checkpoint", "checkpoints", multiple=True, metavar="NAME=CHECKPOINT",
              help="A trained checkpoint or run folder for a model; random weights for the others.")  # fmt: skip
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Score each model on this data set.")
@click.option("--rounds", type=click.IntRange(min=1), default=5, show_default=True, help="Timed rounds per model.")
@click.option(
    "--exported", type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Time the runtime only, on every .onnx/.engine in this folder (no torch needed: a Jetson's view).",
)  # fmt: skip
def bench_zoo_command(
    names: tuple[str, ...],
    seconds: float,
    out_dir: Path,
    checkpoints: tuple[str, ...],
    data: Path | None,
    rounds: int,
    exported: Path | None,
) -> None:
    """Every model of the zoo: size, GMACs, export, eager and runtime latency, memory, parity, ideal device time."""
    from export.bench_zoo import bench_exported, bench_zoo, bench_zoo_lines, write_reports

    if exported is not None:
        rows = bench_exported(exported, seconds, rounds)
        write_reports(rows, seconds, out_dir)
        for line in bench_zoo_lines(rows, seconds):
            click.echo(line)
        return
    require("torch", "train")
    from seld_edge.models import list_models

    wanted = [n for name in names for n in name.split(",") if n] or None
    for name in wanted or []:
        if name not in list_models():
            raise unknown_name("model", name, list_models())
    given = {}
    for item in checkpoints:
        name, sep, path = item.partition("=")
        if not sep:
            raise SeldEdgeError(f"--checkpoint {item!r} is not NAME=CHECKPOINT")
        given[name] = Path(path)
    rows = bench_zoo(wanted, seconds, out_dir, given, data, rounds, log=lambda line: click.echo(line, err=True))
    for line in bench_zoo_lines(rows, seconds):
        click.echo(line)
    click.echo(f"wrote zoo.csv, zoo.md, zoo.json and zoo.png to {out_dir}")


def register(main: click.Group) -> None:
    """The export layer's commands (entry point ``seld_edge.commands``: export)."""
    main.add_command(export_command)
    main.add_command(parity)
    bench = main.commands["bench"]
    assert isinstance(bench, click.Group)
    bench.add_command(bench_scan_command)
    bench.add_command(bench_zoo_command)
