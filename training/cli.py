"""The training layer's commands: ``train``, ``predict``, ``compose`` and the benchmarks that compare with PyTorch.

:func:`register` adds them to the main group through the ``seld_edge.commands`` entry point. Nothing
here imports torch at module level: on a torch-free install the commands say what to install (or,
for the benchmarks, time the torch-free side alone).
"""

import json
import textwrap
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from seld_edge.benchmark import ASSETS
from seld_edge.errors import SeldEdgeError, require
from seld_edge.features import FEATURE_KINDS
from seld_edge.text import plural


class TrainCommand(click.Command):
    """``train``'s help ends with every setting and its default (and, with ``--model NAME``, that model's
    values), as ``yolo cfg`` lists Ultralytics' settings."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # --help is handled while the arguments are parsed, before --model has a value: look it up here.
        ctx.meta["train_model"] = next(
            (args[i + 1] if a == "--model" else a.split("=", 1)[1] for i, a in enumerate(args)
             if (a == "--model" and i + 1 < len(args)) or a.startswith("--model=")),
            None,
        )  # fmt: skip
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Settings (KEY=VALUE, or KEY: VALUE in a --config file)"):
            for line in settings_table(ctx.meta.get("train_model")):
                formatter.write(f"{' ' * formatter.current_indent}{line}\n")


def settings_table(model: str | None) -> list[str]:
    """Lines of the settings table: each key with its default and, with a model, its value for that model
    (the defaults < the card's training values; model.* and augment.* from the card)."""
    try:
        from seld_edge.models import list_models, resolved_config
        from training.config import TrainConfig, resolve_config
    except ImportError:
        return ["(install seld-edge[train] to list them)"]
    sections = ("model", "data", "out", "model_args", "augment", "postprocess")
    defaults = {k: _yaml(v) for k, v in asdict(TrainConfig("", "", "")).items() if k not in sections}
    if model is None:
        rows = [("setting", "default", ""), *((k, v, "") for k, v in defaults.items())]
        models = textwrap.wrap(", ".join(list_models()), 76)
        return [*_columns(rows), "", "With --model NAME the model's values follow the defaults. Models:", *models]
    try:
        resolved = asdict(resolve_config(model, "DATA", "OUT"))
    except SeldEdgeError as err:
        return [f"--model {model}: {err}"]
    rows = [("setting", "default", model), *((k, v, _yaml(resolved[k])) for k, v in defaults.items())]
    rows += [(f"model.{k}", "", _yaml(v)) for k, v in resolved_config(model, **resolved["model_args"]).items()]
    rows += [
        (f"{section}.{k}", "", _yaml(v)) for section in ("augment", "postprocess") for k, v in resolved[section].items()
    ]
    return _columns(rows)


def _columns(rows: list[tuple[str, str, str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) + 2 for i in range(2)]
    return [f"{a:<{widths[0]}}{b:<{widths[1]}}{c}".rstrip() for a, b, c in rows]


def _yaml(value: Any) -> str:
    """A setting as it is typed on the command line (YAML flow style): 1e-3, true, null, [5, 1], cosine."""
    return value if isinstance(value, str) else json.dumps(value)


@click.command("train", cls=TrainCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--model", required=True, help="Registry name (listed below; seld-edge models for sizes).")
@click.option(
    "--data",
    required=True,
    multiple=True,
    type=click.Path(file_okay=False),
    help="STARSS-layout data set folder; repeat to mix several.",
)
@click.option(
    "-o", "--output", "--out", "out", required=True, type=click.Path(file_okay=False),
    help="Run folder: checkpoints, metrics.csv, config.json.",
)  # fmt: skip
@click.option("--epochs", type=click.IntRange(min=1), help="Sets epochs.")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Sets max_minutes: a time budget.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of settings.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Sets device.")
@click.option("--resume", is_flag=True, help="Continue the run in the output folder.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
def train_command(
    model: str,
    data: tuple[str, ...],
    out: str,
    epochs: int | None,
    max_minutes: float | None,
    config_file: str | None,
    device: str | None,
    resume: bool,
    overrides: tuple[str, ...],
) -> dict[str, Any]:
    """Train a registered model on a STARSS-layout data set; the best checkpoint goes to the run folder.

    Settings resolve in this order, later wins: the defaults below, the model card's training values,
    --config FILE, then KEY=VALUE arguments (dotted keys reach into sections: model.rnn_size=64,
    augment.foa_rotation=false). Each epoch is validated with the DCASE metric and the best checkpoint by
    SELD (1 - F for dcase2025) is kept. --max-minutes re-plans the epochs to fit the budget. Several GPUs or
    nodes: launch python -m training.fit under torchrun (DistributedDataParallel).
    """
    require("torch", "train")
    from training.fit import train

    flags = {"epochs": epochs, "max_minutes": max_minutes, "device": device}
    return train(model, list(data), out, config_file, list(overrides), resume, **flags)


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.argument("audio", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: one CSV per clip.",
)  # fmt: skip
@click.option("--tta", is_flag=True, help="Average over the spatial transforms of the input (16 FOA rotations).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="PyTorch device.")
def predict(checkpoint: Path, audio: Path, out_dir: Path, tta: bool, device: str) -> None:
    """PyTorch inference: one DCASE CSV per audio file of AUDIO (a file or a folder) in OUT_DIR.

    CHECKPOINT is a checkpoint (.json/.safetensors) or a training run folder (its best checkpoint).
    """
    require("torch", "train")
    from training.predict import predict_files

    written = predict_files(checkpoint, audio, out_dir, tta=tta, device=device)
    click.echo(f"wrote {plural(len(written), 'CSV file')} to {out_dir}")


@click.command()
@click.argument("model")
@click.argument("parts", nargs=-1, required=True, metavar="PART=CHECKPOINT...")
@click.option(
    "-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: best.json and best.safetensors.",
)  # fmt: skip
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
@click.option(
    "--kind", type=click.Choice(FEATURE_KINDS), default="foa_logmel_iv", show_default=True, help="Feature kind to time."
)
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
    show_default="the built-in SELDnet",
    help="Exported .onnx model.",
)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    show_default="the built-in SELDnet's",
    help="Its checkpoint, for the PyTorch eager reference.",
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
    main.add_command(train_command)
    main.add_command(predict)
    main.add_command(compose)
    bench = main.commands["bench"]
    assert isinstance(bench, click.Group)
    bench.add_command(bench_features_command)
    bench.add_command(bench_runtime_command)
