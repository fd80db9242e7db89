"""The `seld-edge` command line. Forms are fixed by design.md; other tools depend on them.

Only this module exits: library code raises SeldEdgeError, which becomes one line on stderr and
exit code 2 (click's own usage errors also exit 2).
"""

import json
import math
from pathlib import Path
from typing import Any

import click

from seld_edge import __version__
from seld_edge.errors import USER_ERROR_EXIT_CODE, SeldEdgeError, require
from seld_edge.features import FEATURE_KINDS


class _Group(click.Group):
    """Turns SeldEdgeError into a one-line message and a non-zero exit, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeldEdgeError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(USER_ERROR_EXIT_CODE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seld-edge")
def main() -> None:
    """Sound event localization and detection: data, features, metrics, export and edge runtime."""


@main.command()
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    default="foa",
    show_default=True,
    help="foa, mic (tetrahedral array), stereo (DCASE 2025), or foa,mic: both recordings of the same scenes.",
)
@click.option("--train", "n_train", type=click.IntRange(min=0), default=24, show_default=True, help="Training scenes.")
@click.option("--test", "n_test", type=click.IntRange(min=0), default=8, show_default=True, help="Held-out scenes.")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=30.0, show_default=True, help="Scene length.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-reflections", is_flag=True, help="Leave out the early reflections.")
def synth(out_dir: Path, fmt: str, n_train: int, n_test: int, seconds: float, seed: int, no_reflections: bool) -> None:
    """Write a synthetic STARSS23-layout data set (audio + DCASE metadata) to OUT_DIR."""
    from seld_edge.synth import generate_dataset
    from seld_edge.synth.dataset import parse_formats

    formats = parse_formats(fmt)
    paths = generate_dataset(
        out_dir, fmt=formats, n_train=n_train, n_test=n_test, seconds=seconds, seed=seed, reflections=not no_reflections
    )
    click.echo(f"wrote {len(paths) // len(formats)} scenes ({', '.join(formats)}) to {out_dir}")


@main.command()
@click.argument("audio", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", required=True, help=f"Feature kind: {', '.join(FEATURE_KINDS)}.")
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def features(audio: Path, kind: str, out: Path) -> None:
    """Compute features of AUDIO and save them as a (C, T, F) float32 .npy file."""
    from seld_edge.features import feature_config, features_from_file
    from seld_edge.io import atomic_save_npy

    config = feature_config(kind)
    if not audio.is_file():
        raise SeldEdgeError(f"{audio}: no such file")
    array = features_from_file(audio, config)
    atomic_save_npy(out, array)
    click.echo(f"{out}: {kind} features {tuple(array.shape)}")


@main.command("eval")
@click.option("--ref", "ref_dir", required=True, type=click.Path(path_type=Path), help="Reference CSV folder.")
@click.option("--pred", "pred_dir", required=True, type=click.Path(path_type=Path), help="Prediction CSV folder.")
@click.option("--metric", type=click.Choice(["dcase2021", "dcase2023", "dcase2024", "dcase2025"]), default="dcase2023")
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
def evaluate(ref_dir: Path, pred_dir: Path, metric: str, as_json: bool) -> None:
    """Score predicted DCASE CSVs against references with the official DCASE metric definitions."""
    from seld_edge.metrics import evaluate_dirs

    scores = evaluate_dirs(ref_dir, pred_dir, metric=metric)
    if as_json:
        click.echo(json.dumps({k: (None if math.isnan(v) else v) for k, v in scores.items()}))
    else:
        click.echo("  ".join(f"{k} {v:.4f}" for k, v in scores.items()))


@main.group()
def bench() -> None:
    """Benchmarks; each prints ratios against a reference run in the same process."""


@bench.command("features")
@click.option("--kind", default="foa_logmel_iv", show_default=True, help="Feature kind to time.")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=60.0, show_default=True, help="Clip length.")
def bench_features_command(kind: str, seconds: float) -> None:
    """Time feature extraction on one core (numpy vs the torch twin when torch is installed)."""
    from seld_edge.benchmark import bench_features

    for line in bench_features(kind, seconds):
        click.echo(line)


@bench.command("runtime")
@click.option(
    "--model",
    "model_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Exported .onnx model (default: the built-in SELDnet).",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Its checkpoint, for the PyTorch eager reference (default: the built-in one).",
)
@click.option("--seconds", type=click.FloatRange(min=5.0), default=60.0, show_default=True, help="Clip length.")
def bench_runtime_command(model_path: Path | None, checkpoint: Path | None, seconds: float) -> None:
    """Time the runtime end to end against PyTorch eager on one core, and streaming latency."""
    from seld_edge.benchmark import ASSETS, bench_runtime

    for line in bench_runtime(
        model_path or ASSETS / "seldnet_synth.onnx", checkpoint or ASSETS / "seldnet_synth", seconds
    ):
        click.echo(line)


@bench.command("scan")
@click.option("--length", type=click.IntRange(min=1), default=None, help="Scan length L (default: a 5 s first stage).")
@click.option("--no-model", is_flag=True, help="Skip exporting and timing the whole FFMamba (about a minute).")
def bench_scan_command(length: int | None, no_model: bool) -> None:
    """Selective scan and FFMamba on one core: chunked vs sequential, ONNX flavour, 5 s clip latency."""
    require("torch", "train")
    from seld_edge.ops.bench import bench_selective_scan

    for line in bench_selective_scan(length=length, with_model=not no_model):
        click.echo(line)


@main.command()
def models() -> None:
    """The model zoo: name, parameter count, feature kind, output format."""
    require("torch", "train")
    from seld_edge.models import create, list_models, model_card

    click.echo(f"{'name':<16}{'params':>12}  {'feature kind':<20}{'output format':<14}")
    for name in list_models():
        card = model_card(name)
        params = sum(p.numel() for p in create(name).parameters())
        click.echo(f"{name:<16}{params / 1e6:>10.3f} M  {card.feature_kind:<20}{card.output_format:<14}")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("audio", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--tta", is_flag=True, help="Average over the 16 FOA rotations (FOA models only).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def predict(checkpoint: Path, audio: Path, out_dir: Path, tta: bool, device: str) -> None:
    """PyTorch inference: one DCASE CSV per audio file of AUDIO (a file or a folder) in OUT_DIR.

    CHECKPOINT is a checkpoint (.json/.safetensors) or a training run folder (its best checkpoint).
    """
    require("torch", "train")
    from training.predict import predict_files

    written = predict_files(checkpoint, audio, out_dir, tta=tta, device=device)
    click.echo(f"wrote {len(written)} CSV files to {out_dir}")


@main.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", type=click.Path(file_okay=False, path_type=Path), help="Data set: also compare end to end.")
@click.option("--metric", type=click.Choice(["dcase2021", "dcase2023", "dcase2024", "dcase2025"]), default="dcase2023")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def parity(checkpoint: Path, model: Path, data: Path | None, metric: str, as_json: bool) -> None:
    """PyTorch (CHECKPOINT) against the runtime (MODEL) on the same audio: errors per output.

    Without --data a generated scene is used and only outputs and features are compared; with
    --data the held-out clips also go end to end to DCASE events and scores (delta SELD).
    """
    require("torch", "train")
    from export.parity import DELTA_SELD_BOUND, compare, data_clips, generated_clip, within_bounds
    from runtime.model import load_model
    from seld_edge.io import file_sha256
    from training.checkpoint import load_checkpoint, resolve_checkpoint

    system, _ = load_checkpoint(checkpoint)
    runtime = load_model(model)
    meta = runtime.metadata
    if meta.model != system.name or meta.checkpoint_sha256 != file_sha256(
        resolve_checkpoint(checkpoint).with_suffix(".safetensors")
    ):
        raise SeldEdgeError(f"{model} was not exported from {checkpoint} (model {meta.model}, other weights)")
    clips = data_clips(data, meta) if data is not None else [generated_clip(meta)]
    if not clips:
        raise SeldEdgeError(f"{data}: no labelled held-out (test) clips to compare on")
    report = compare(system, runtime, clips, metric)
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


def _print_parity(report: dict, model: str, clips: int, metric: str) -> None:
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


def _register_subpackage_commands() -> None:
    """Commands whose code lives beside its subject (plotting, export, runtime); imports stay lazy."""
    from export.cli import export_command
    from runtime.cli import run_command
    from seld_edge.plot_cli import plot_command

    main.add_command(export_command)
    main.add_command(plot_command)
    main.add_command(run_command)


_register_subpackage_commands()
