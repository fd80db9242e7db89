"""The training layer's commands: ``predict``, ``compose`` and the benchmarks that compare with PyTorch.

:func:`register` adds them to the main group through the ``seld_edge.commands`` entry point. Nothing
here imports torch at module level: on a torch-free install the commands say what to install (or,
for the benchmarks, time the torch-free side alone).
"""

from pathlib import Path

import click

from seld_edge.benchmark import ASSETS
from seld_edge.errors import require


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("audio", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--tta", is_flag=True, help="Average over the spatial transforms of the input (16 FOA rotations).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
def predict(checkpoint: Path, audio: Path, out_dir: Path, tta: bool, device: str) -> None:
    """PyTorch inference: one DCASE CSV per audio file of AUDIO (a file or a folder) in OUT_DIR.

    CHECKPOINT is a checkpoint (.json/.safetensors) or a training run folder (its best checkpoint).
    """
    require("torch", "train")
    from training.predict import predict_files

    written = predict_files(checkpoint, audio, out_dir, tta=tta, device=device)
    click.echo(f"wrote {len(written)} CSV files to {out_dir}")


@click.command()
@click.argument("model")
@click.argument("parts", nargs=-1, required=True, metavar="PART=CHECKPOINT...")
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
def compose(model: str, parts: tuple[str, ...], out_dir: Path) -> None:
    """Build the composite MODEL from its trained parts into OUT_DIR (best.json + best.safetensors).

    Each PART=CHECKPOINT names a part of the composite's card and a checkpoint or run folder of the
    model it must be, e.g. `seld-edge compose m2m_ast sed=runs/sed doa=runs/doa -o runs/m2m_ast`. The
    result exports, runs, predicts and checks parity like any checkpoint.
    """
    require("torch", "train")
    from training.compose import compose_checkpoint

    stem = compose_checkpoint(model, dict(_part(p) for p in parts), out_dir)
    click.echo(f"wrote {stem}.json and {stem}.safetensors")


def _part(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise click.BadParameter(f"{text!r} is not PART=CHECKPOINT", param_hint="PARTS")
    return name, Path(path)


@click.command("features")
@click.option("--kind", default="foa_logmel_iv", show_default=True, help="Feature kind to time.")
@click.option("--seconds", type=click.FloatRange(min=1.0), default=60.0, show_default=True, help="Clip length.")
def bench_features_command(kind: str, seconds: float) -> None:
    """Time feature extraction on one core (numpy vs the torch twin when torch is installed)."""
    from training.bench import bench_features

    for line in bench_features(kind, seconds):
        click.echo(line)


@click.command("runtime")
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
    from training.bench import bench_runtime

    model = model_path or ASSETS / "seldnet_synth.onnx"
    for line in bench_runtime(model, checkpoint or ASSETS / "seldnet_synth", seconds):
        click.echo(line)


def register(main: click.Group) -> None:
    """The training layer's commands (entry point ``seld_edge.commands``: training)."""
    main.add_command(predict)
    main.add_command(compose)
    bench = main.commands["bench"]
    assert isinstance(bench, click.Group)
    bench.add_command(bench_features_command)
    bench.add_command(bench_runtime_command)
