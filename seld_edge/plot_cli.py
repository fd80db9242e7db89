"""`seld-edge plot`: PNG figures of predicted DCASE CSVs against their references, or of a training run.

Kept out of cli.py so the command's pairing rules sit next to each other; cli.py registers it with
``main.add_command``. Imports stay inside the command so ``seld-edge --help`` never loads matplotlib.
"""

import math
from pathlib import Path

import click

from seld_edge.metrics import METRICS


@click.command("plot")
@click.option("--ref", type=click.Path(path_type=Path), help="Reference CSV file or folder.")
@click.option("--pred", type=click.Path(path_type=Path), help="Prediction CSV file or folder.")
@click.option(
    "--run",
    "run_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="A training run folder: draw its curves (metrics.csv) instead.",
)
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(path_type=Path),
    show_default="RUN_DIR/training.png with --run",
    help="A .png file for one clip; any other path is a folder of CLIP.png files.",
)
@click.option("--clip", default=None, help="Plot only the clip of this name (a CSV file stem).")
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    show_default="dcase2025 for stereo data, dcase2023 otherwise",
    help="DCASE metric of the scores in each title.",
)
def plot_command(
    ref: Path | None, pred: Path | None, run_dir: Path | None, out: Path | None, clip: str | None, metric: str | None
) -> None:
    """Plot activity, azimuth, elevation and distance over time: prediction (dark) over reference (light).

    Folders are searched recursively and paired by file name, as in `seld-edge eval`; a clip without
    a prediction CSV is plotted with its reference alone. Two files are paired whatever their names.
    Stereo (DCASE 2025) data gets azimuths on -90..90 and no elevation panel; the time axis runs to the
    end of the clip's audio where it sits beside the reference (STARSS layout), else to the last event.

    With --run RUN_DIR the training curves of that run are drawn from its metrics.csv.
    """
    from seld_edge.errors import SeldEdgeError
    from seld_edge.formats import STARSS23_CLASSES, read_events
    from seld_edge.metrics import evaluate
    from seld_edge.metrics.evaluate import csv_form
    from seld_edge.plot import plot_clip, save_png, training_figure

    if run_dir is not None:
        if ref is not None or pred is not None:
            raise click.UsageError("--run draws a training run; --ref and --pred draw clips: not both")
        target = out or run_dir / "training.png"
        save_png(training_figure(run_dir / "metrics.csv", run_dir.resolve().name), target)
        click.echo(f"wrote {target}")
        return
    if ref is None or pred is None or out is None:
        raise click.UsageError("give --ref, --pred and -o/--output (or --run RUN_DIR)")
    pairs = _pair(ref, pred, clip)
    if out.suffix.lower() == ".png" and len(pairs) > 1:
        raise SeldEdgeError(f"{out}: one file for {len(pairs)} clips; give a folder or --clip NAME")
    for name, ref_path, pred_path in pairs:
        reference = read_events(ref_path, reference=True, cartesian_reference=True)  # any two files may be compared
        prediction = None if pred_path is None else read_events(pred_path, reference=False)
        stereo = csv_form(ref_path) == "stereo"
        scores = None
        if prediction is not None and reference:
            scored = evaluate([(reference, prediction)], metric or ("dcase2025" if stereo else "dcase2023"))
            scores = {k: v for k, v in scored.items() if not math.isnan(v)}
        target = out if out.suffix.lower() == ".png" else out / f"{name}.png"
        plot_clip(reference, prediction, target, name, STARSS23_CLASSES, stereo=stereo,
                  duration_s=clip_seconds(ref_path), scores=scores)  # fmt: skip
        click.echo(f"wrote {target}")


def clip_seconds(reference: Path) -> float | None:
    """The length of the audio beside a reference in the STARSS layout (ROOT/metadata_dev/SPLIT/X.csv ->
    ROOT/foa_dev/SPLIT/X.wav, or another recording format), None where there is none."""
    import soundfile as sf

    from seld_edge.audio import AUDIO_SUFFIXES
    from seld_edge.formats.dataset import AUDIO_FOLDERS

    for folder in reference.parents:
        if folder.name.startswith("metadata_"):
            relative = reference.relative_to(folder).with_suffix("")
            for audio_folder in AUDIO_FOLDERS:
                for suffix in AUDIO_SUFFIXES:
                    audio = folder.parent / audio_folder / relative.with_suffix(suffix)
                    if audio.is_file():
                        try:
                            return float(sf.info(str(audio)).duration)
                        except (sf.LibsndfileError, RuntimeError):
                            return None
            return None
    return None


def _pair(ref: Path, pred: Path, clip: str | None) -> list[tuple[str, Path, Path | None]]:
    """(clip name, reference CSV, prediction CSV or None) for each clip to plot.

    A side given as one file names the clip (so a single prediction picks its reference out of a
    folder); otherwise every reference is plotted, or only ``clip``.
    """
    from seld_edge.errors import SeldEdgeError
    from seld_edge.formats import find_csvs

    for path in (ref, pred):
        if not path.exists():
            raise SeldEdgeError(f"{path}: no such file or folder")
    if ref.is_file() and pred.is_file():
        if clip is not None and clip != ref.stem:
            raise SeldEdgeError(f"--clip {clip}: the reference is {ref.name}")
        return [(ref.stem, ref, pred)]
    references = {ref.stem: ref} if ref.is_file() else find_csvs(ref)
    predictions = {pred.stem: pred} if pred.is_file() else find_csvs(pred)
    if not references:
        raise SeldEdgeError(f"{ref}: no reference CSV files")
    if clip is not None:
        names = [clip]
    elif pred.is_file():
        names = [pred.stem]
    else:
        names = sorted(references)
    for name in names:
        if name not in references:
            raise SeldEdgeError(f"{ref}: no reference CSV named {name}.csv")
    return [(name, references[name], predictions.get(name)) for name in names]
