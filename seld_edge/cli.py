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
from seld_edge.errors import USER_ERROR_EXIT_CODE, SeldEdgeError, require, user_message
from seld_edge.features import FEATURE_KINDS
from seld_edge.metrics import METRICS
from seld_edge.plot_cli import plot_command


class _Group(click.Group):
    """Turns SeldEdgeError, and any OSError (a full disk, a file that vanished), into a one-line message
    and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (SeldEdgeError, OSError) as err:
            click.echo(f"error: {user_message(err)}", err=True)
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
@click.option(
    "--seconds", type=click.FloatRange(min=1.0, max=600.0), default=30.0, show_default=True, help="Scene length."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-reflections", is_flag=True, help="Leave out the early reflections.")
def synth(out_dir: Path, fmt: str, n_train: int, n_test: int, seconds: float, seed: int, no_reflections: bool) -> None:
    """Write a synthetic STARSS23-layout data set (audio + DCASE metadata) to OUT_DIR.

    The data set is written whole or (on any error) not at all; one already in OUT_DIR is replaced,
    its scenes that the new one lacks removed.
    """
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
    import numpy as np

    from seld_edge.features import feature_config, features_from_file
    from seld_edge.io import OutputSet

    config = feature_config(kind)
    if not audio.is_file():
        raise SeldEdgeError(f"{audio}: no such file")
    if out.exists() and out.samefile(audio):
        raise SeldEdgeError(f"{out}: that is the input audio; write the features to another file")
    with OutputSet(out.parent, [out]) as outputs:  # the target is checked before the work
        array = features_from_file(audio, config)
        outputs.write(out, lambda handle: np.save(handle, array))
    click.echo(f"{out}: {kind} features {tuple(array.shape)}")


@main.command("eval")
@click.option("--ref", "ref_dir", required=True, type=click.Path(path_type=Path), help="Reference CSV folder.")
@click.option("--pred", "pred_dir", required=True, type=click.Path(path_type=Path), help="Prediction CSV folder.")
@click.option("--metric", type=click.Choice(METRICS), default="dcase2023", show_default=True)
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
    """Benchmarks; each prints ratios against a reference run in the same process (the layers add them)."""


@main.command()
def models() -> None:
    """The model zoo: name, parameter count, feature kind, output format."""
    require("torch", "train")
    from seld_edge.models import list_models, model_card, new_system

    click.echo(f"{'name':<16}{'params':>12}  {'feature kind':<20}{'output format':<14}")
    for name in list_models():
        card = model_card(name)
        system = new_system(name)
        params = sum(p.numel() for p in system.parameters())
        kinds = ",".join(i.feature_config.kind for i in system.inputs)
        click.echo(f"{name:<16}{params / 1e6:>10.3f} M  {kinds:<20}{card.output_format:<14}")


def _register_layer_commands() -> None:
    """Each higher layer (runtime, training, export) registers its own commands through the
    ``seld_edge.commands`` entry points in pyproject.toml, so this core module never imports them."""
    from importlib.metadata import entry_points

    main.add_command(plot_command)
    for entry in sorted(entry_points(group="seld_edge.commands"), key=lambda e: e.name):
        entry.load()(main)


_register_layer_commands()
