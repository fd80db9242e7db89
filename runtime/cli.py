"""``seld-edge run MODEL AUDIO_OR_DIR -o OUT_DIR [--stream]``: the torch-free runtime's command.

:func:`register` adds it to the main group (through the ``seld_edge.commands`` entry point), whose
wrapper turns SeldEdgeError into one line and exit code 2. Imports stay inside the command so that
``seld-edge`` starts without loading onnxruntime for its other commands.
"""

import math
from pathlib import Path

import click


@click.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("audio", type=click.Path(path_type=Path))
@click.option(
    "-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: one CSV per clip.",
)  # fmt: skip
@click.option("--stream", is_flag=True, help="Feed the audio in blocks as a live source would; print events live.")
@click.option("--block-ms", type=click.IntRange(min=1), default=100, show_default=True, help="Block length (--stream).")
@click.option(
    "--lookahead-ms",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="--stream: delay each label frame by this much (whole label frames) to give the model right context.",
)
@click.option(
    # the names of runtime.model.PROVIDERS, spelled out so that --help does not load onnxruntime
    "--provider",
    type=click.Choice(["cpu", "cuda", "tensorrt", "auto"]),
    default="cpu",
    show_default=True,
    help="ONNX Runtime execution provider; auto takes TensorRT or CUDA when this onnxruntime has them.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="ONNX Runtime intra-op threads (0: one per core).",
)
def run_command(
    model: Path,
    audio: Path,
    out_dir: Path,
    stream: bool,
    block_ms: int,
    lookahead_ms: int,
    provider: str,
    threads: int,
) -> None:
    """Torch-free inference with an exported MODEL (.onnx): one DCASE CSV per audio file of AUDIO in OUT_DIR.

    AUDIO is a file or a folder (searched recursively). With --stream the audio is fed in blocks as a
    live source would deliver it, events are printed as they are computed, and per-block latency
    statistics close the run.
    """
    from runtime.model import load_model
    from runtime.pipeline import run_files, stream_files
    from runtime.stream import LatencyStats
    from seld_edge.errors import SeldEdgeError
    from seld_edge.formats.label_rate import DCASE_LABEL_RATE_HZ
    from seld_edge.text import plural

    loaded = load_model(model, provider=provider, threads=threads)
    meta = loaded.metadata
    if not stream:
        written = run_files(loaded, audio, out_dir)
        click.echo(f"wrote {plural(len(written), 'CSV file')} to {out_dir}")
        return
    if loaded.fixed_frames is not None:
        raise SeldEdgeError(
            f"{model}: the graph's time axis is fixed at {loaded.fixed_frames} frames; streaming needs a dynamic "
            "one (re-export with a dynamic time axis, or run without --stream)"
        )
    stats = LatencyStats()
    lookahead = math.ceil(lookahead_ms * meta.label_rate_hz / 1000.0 - 1e-9)
    files = set()
    for path, frame in stream_files(loaded, audio, out_dir, block_ms / 1000.0, lookahead, stats):
        files.add(path)
        seconds = frame.index / DCASE_LABEL_RATE_HZ
        for e in frame.events:
            click.echo(
                f"{path.name}  {seconds:8.1f} s  {meta.class_names[e.class_index]:<20} "
                f"azimuth {e.azimuth:6.1f}  elevation {e.elevation:5.1f}"
            )
    click.echo(f"per-block latency ({block_ms} ms blocks): {stats.format()}")
    click.echo(f"wrote {plural(len(files), 'CSV file')} to {out_dir}")


def register(main: click.Group) -> None:
    """The runtime's commands (entry point ``seld_edge.commands``: runtime)."""
    main.add_command(run_command)
