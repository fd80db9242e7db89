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
from seld_edge.metrics.axes import AxisAgreement
from seld_edge.plot_cli import plot_command
from seld_edge.text import plural


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
@click.argument("out_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o", "--output", "output", type=click.Path(file_okay=False, path_type=Path), help="Output folder (or OUT_DIR)."
)
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
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the scenes.")
@click.option("--no-reflections", is_flag=True, help="Leave out the early reflections.")
def synth(
    out_dir: Path | None,
    output: Path | None,
    fmt: str,
    n_train: int,
    n_test: int,
    seconds: float,
    seed: int,
    no_reflections: bool,
) -> None:
    """Write a synthetic STARSS23-layout data set (audio + DCASE metadata) to OUT_DIR (or -o DIR).

    The data set is written whole or (on any error) not at all; one already in OUT_DIR is replaced,
    its scenes that the new one lacks removed.
    """
    from seld_edge.synth import generate_dataset
    from seld_edge.synth.dataset import parse_formats

    if (out_dir is None) == (output is None):
        raise click.UsageError("give the output folder once: OUT_DIR or -o/--output")
    out_dir = out_dir or output
    formats = parse_formats(fmt)
    paths = generate_dataset(
        out_dir, fmt=formats, n_train=n_train, n_test=n_test, seconds=seconds, seed=seed, reflections=not no_reflections
    )
    click.echo(f"wrote {plural(len(paths) // len(formats), 'scene')} ({', '.join(formats)}) to {out_dir}")


@main.group()
def convert() -> None:
    """Convert a data set to another recording format."""


@convert.command("stereo")
@click.argument("src_root", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dst_root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--clip-seconds", type=float, default=5.0, show_default=True, help="Clip length, a multiple of 0.1 s.")
def convert_stereo(src_root: Path, dst_root: Path, clip_seconds: float) -> None:
    """FOA data set in the STARSS layout (SRC_ROOT/foa_dev, metadata_dev) -> DCASE 2025 stereo clips in DST_ROOT:
    L = W + Y, R = W - Y, azimuth folded to [-90, 90], distance in cm, the 2025 header row."""
    from seld_edge.convert import convert_to_stereo

    done = convert_to_stereo(src_root, dst_root, clip_seconds)
    click.echo(
        f"wrote {done.clips} stereo clips of {clip_seconds:g} s from {done.recordings} FOA recordings to {dst_root}"
        f" ({done.dropped_seconds:.1f} s of tails shorter than a clip left out)"
    )


@main.command()
@click.argument("audio", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--kind", type=click.Choice(FEATURE_KINDS), default="foa_logmel_iv", show_default=True, help="Feature kind."
)
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .npy file."
)
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
@click.option("--metric", type=click.Choice(METRICS), default="dcase2023", show_default=True, help="DCASE metric.")
@click.option("--per-class", is_flag=True, help="Also give the results of each class (not for dcase2021).")
@click.option(
    "--axes", is_flag=True, help="Also give how closely each axis (x, y, z) of the directions follows the reference's."
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as one JSON object.")
def evaluate(ref_dir: Path, pred_dir: Path, metric: str, per_class: bool, axes: bool, as_json: bool) -> None:
    """Score predicted DCASE CSVs against references with the official DCASE metric definitions.

    Warnings (missing predictions, predictions or a metric of another data form) and notes go to stderr;
    they never change a score. --per-class prints each class's results as the DCASE baselines do (in
    --json under "per_class"); the overall scores are their official averages. --axes is a diagnostic
    outside the metric: the correlation of each coordinate of the predicted unit vectors with the
    reference's, over the (frame, class) pairs where each side has one event (in --json under "axes").
    A model that ignores an axis shows there as a correlation near 0, where LE only stops falling.
    """
    from seld_edge.formats import STARSS23_CLASSES
    from seld_edge.metrics import evaluation_report

    if per_class and metric == "dcase2021":
        raise SeldEdgeError("--per-class: dcase2021 averages over events (micro), it has no per-class results")
    report = evaluation_report(ref_dir, pred_dir, metric=metric)
    for line in report.warnings:
        click.echo(f"warning: {line}", err=True)
    for line in report.notes:
        click.echo(f"note: {line}", err=True)
    table = report.per_class if per_class else None
    if as_json:
        result: dict[str, Any] = {k: _json_number(v) for k, v in report.scores.items()}
        if table is not None:
            result["per_class"] = [
                {"class": i, "name": STARSS23_CLASSES[i], **{k: _json_number(v[i]) for k, v in table.items()}}
                for i in range(len(STARSS23_CLASSES))
            ]
        if axes and report.axes is not None:
            result["axes"] = {"pairs": report.axes.pairs, **_json_axes(report.axes)}
        click.echo(json.dumps(result))
        return
    if table is not None:
        click.echo(f"{'class':<24}" + "".join(f"{k:>9}" for k in table))
        for i, name in enumerate(STARSS23_CLASSES):
            click.echo(f"{i:>2} {name:<21}" + "".join(f"{v[i]:>9.4f}" for v in table.values()).replace("nan", "  -"))
    if axes and report.axes is not None:
        a = report.axes
        click.echo(f"directions over {a.pairs} (frame, class) pairs with one event on each side:")
        for name, r in a.correlation.items():
            click.echo(
                f"  {name}: correlation {r:7.3f}  std reference {a.reference_std[name]:.3f} "
                f"prediction {a.prediction_std[name]:.3f}".replace("nan", "  -")
            )
    click.echo("  ".join(f"{k} {v:.4f}" for k, v in report.scores.items()))


def _json_axes(agreement: AxisAgreement) -> dict[str, dict[str, float | None]]:
    return {
        name: {
            "correlation": _json_number(agreement.correlation[name]),
            "reference_std": _json_number(agreement.reference_std[name]),
            "prediction_std": _json_number(agreement.prediction_std[name]),
        }
        for name in agreement.correlation
    }


def _json_number(value: float) -> float | None:
    """JSON has no NaN: an undefined score (nothing matched) is null."""
    return None if math.isnan(value) else float(value)


@main.group()
def bench() -> None:
    """Benchmarks; each prints ratios against a reference run in the same process (the layers add them)."""


@main.command()
@click.option("--seconds", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Clip length for MACs.")
def models(seconds: float) -> None:
    """The model zoo: parameters, GMACs per clip (as the runtime windows it), feature kinds, output format."""
    require("torch", "train")
    from seld_edge.models import list_models, model_card
    from seld_edge.models.complexity import model_complexity

    click.echo(f"{'name':<18}{'params':>11}  {f'GMACs/{seconds:g} s':>12}  {'feature kinds':<34}output format")
    for name in list_models():
        card = model_card(name)
        cost = model_complexity(name, seconds)
        kinds = ",".join(card.feature_kinds)
        row = f"{name:<18}{cost.parameters / 1e6:>9.3f} M  {cost.gmacs:>12.2f}  {kinds:<34}{card.output_format}"
        click.echo(row)


def _register_layer_commands() -> None:
    """Each higher layer (runtime, training, export) registers its own commands through the
    ``seld_edge.commands`` entry points in pyproject.toml, so this core module never imports them."""
    from importlib.metadata import entry_points

    main.add_command(plot_command)
    for entry in sorted(entry_points(group="seld_edge.commands"), key=lambda e: e.name):
        entry.load()(main)


_register_layer_commands()
