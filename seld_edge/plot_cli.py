"""`seld-edge plot`: PNG figures of predicted DCASE CSVs against their references.

Kept out of cli.py so the command's pairing rules sit next to each other; cli.py registers it with
``main.add_command``. Imports stay inside the command so ``seld-edge --help`` never loads matplotlib.
"""

from pathlib import Path

import click


@click.command("plot")
@click.option("--ref", required=True, type=click.Path(path_type=Path), help="Reference CSV file or folder.")
@click.option("--pred", required=True, type=click.Path(path_type=Path), help="Prediction CSV file or folder.")
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="A .png file for one clip; any other path is a folder of CLIP.png files.",
)
@click.option("--clip", default=None, help="Plot only the clip of this name (a CSV file stem).")
def plot_command(ref: Path, pred: Path, out: Path, clip: str | None) -> None:
    """Plot activity, azimuth and elevation over time: prediction (dark) over reference (light).

    Folders are searched recursively and paired by file name, as in `seld-edge eval`; a clip without
    a prediction CSV is plotted with its reference alone. Two files are paired whatever their names.
    """
    from seld_edge.errors import SeldEdgeError
    from seld_edge.formats import STARSS23_CLASSES, read_events
    from seld_edge.plot import plot_clip

    pairs = _pair(ref, pred, clip)
    if out.suffix.lower() == ".png" and len(pairs) > 1:
        raise SeldEdgeError(f"{out}: one file for {len(pairs)} clips; give a folder or --clip NAME")
    for name, ref_path, pred_path in pairs:
        reference = read_events(ref_path, reference=True)
        prediction = [] if pred_path is None else read_events(pred_path, reference=False)
        title = name if pred_path is not None else f"{name} (no prediction)"
        target = out if out.suffix.lower() == ".png" else out / f"{name}.png"
        plot_clip(reference, prediction, target, title, STARSS23_CLASSES)
        click.echo(f"wrote {target}")


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
