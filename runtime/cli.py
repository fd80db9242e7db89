"""``seld-edge run MODEL AUDIO_OR_DIR -o OUT_DIR [--stream]``: the torch-free runtime's command.

Live input: ``seld-edge run MODEL - --stream`` reads 16-bit PCM (raw or WAV) from standard input and
``--device NAME`` captures from a sound card (runtime.live); each label frame is appended to
OUT_DIR/live.csv as it is decided, and with ``--json-lines`` printed as one JSON object.

:func:`register` adds it to the main group (through the ``seld_edge.commands`` entry point), whose
wrapper turns SeldEdgeError into one line and exit code 2. Imports stay inside the command so that
``seld-edge`` starts without loading onnxruntime for its other commands.
"""

import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from runtime.pipeline import Model
    from runtime.stream import LatencyStats
    from seld_edge.model_metadata import ModelMetadata


def _list_devices(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    """--list-devices: print the capture devices and exit, before MODEL and AUDIO are asked for."""
    if not value or ctx.resilient_parsing:
        return
    from runtime.live import list_devices
    from seld_edge.errors import SeldEdgeError

    try:
        lines = list_devices()
    except SeldEdgeError as err:
        click.echo(f"error: {err}", err=True)
        ctx.exit(2)
    for line in lines or ["no capture devices"]:
        click.echo(line)
    ctx.exit(0)


@click.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("audio", required=False, metavar="[AUDIO_OR_DIR | -]")
@click.option(
    "-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: one CSV per clip (live input: live.csv, a row per event as it is decided).",
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
@click.option("--device", help="Live: capture from this sound card (a name or an index; needs seld-edge[live]).")
@click.option(
    "--list-devices", is_flag=True, is_eager=True, expose_value=False, callback=_list_devices,
    help="List the capture devices and exit.",
)  # fmt: skip
@click.option(
    "--channels", type=click.IntRange(min=1), show_default="the model's", help="Live: channels of the raw PCM on stdin."
)
@click.option("--rate", type=click.IntRange(min=1), show_default="the model's", help="Live: sample rate (Hz) of stdin.")
@click.option("--json-lines", is_flag=True, help="Live: one JSON object per label frame on stdout, as it is decided.")
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
    audio: str | None,
    out_dir: Path,
    stream: bool,
    block_ms: int,
    lookahead_ms: int,
    device: str | None,
    channels: int | None,
    rate: int | None,
    json_lines: bool,
    provider: str,
    threads: int,
) -> None:
    """Torch-free inference with an exported MODEL (.onnx): one DCASE CSV per audio file of AUDIO in OUT_DIR.

    AUDIO is a file or a folder (searched recursively). With --stream the audio is fed in blocks as a
    live source would deliver it, events are printed as they are computed, and per-block latency
    statistics close the run.

    Live input, always streamed: AUDIO "-" reads 16-bit PCM from standard input, raw (--channels and
    --rate, checked against the model) or a WAV stream, e.g. arecord -D hw:1 -c 4 -r 24000 -f S16_LE |
    seld-edge run MODEL - --stream -o out; --device NAME captures from a sound card until Ctrl-C. Each label
    frame's rows are appended to OUT_DIR/live.csv at once, and --json-lines prints the frame on stdout.
    """
    from runtime.model import load_model
    from runtime.pipeline import run_files, stream_files
    from runtime.stream import LatencyStats
    from seld_edge.errors import SeldEdgeError
    from seld_edge.formats.label_rate import DCASE_LABEL_RATE_HZ
    from seld_edge.text import plural

    live = audio == "-" or device is not None
    if device is not None and audio is not None:
        raise SeldEdgeError(f"--device {device} captures live: give no AUDIO (got {audio})")
    if audio is None and device is None:
        raise click.UsageError("give AUDIO_OR_DIR, - (standard input) or --device NAME")
    if not live and (channels or rate or json_lines):
        raise SeldEdgeError("--channels, --rate and --json-lines are for live input (AUDIO - or --device)")
    loaded = load_model(model, provider=provider, threads=threads)
    meta = loaded.metadata
    if not (stream or live):
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
    if live:
        _run_live(loaded, meta, audio, device, out_dir, block_ms, lookahead, channels, rate, json_lines, stats)
        return
    files = set()
    for path, frame in stream_files(loaded, Path(audio), out_dir, block_ms / 1000.0, lookahead, stats):
        files.add(path)
        seconds = frame.index / DCASE_LABEL_RATE_HZ
        for e in frame.events:
            click.echo(
                f"{path.name}  {seconds:8.1f} s  {meta.class_names[e.class_index]:<20} "
                f"azimuth {e.azimuth:6.1f}  elevation {e.elevation:5.1f}"
            )
    click.echo(f"per-block latency ({block_ms} ms blocks): {stats.format()}")
    click.echo(f"wrote {plural(len(files), 'CSV file')} to {out_dir}")


def _run_live(
    model: "Model",
    meta: "ModelMetadata",
    audio: str | None,
    device: str | None,
    out_dir: Path,
    block_ms: int,
    lookahead: int,
    channels: int | None,
    rate: int | None,
    json_lines: bool,
    stats: "LatencyStats",
) -> None:
    """Standard input or a sound card through the model; every frame written as it is decided."""
    from runtime.live import LIVE_CSV, LiveOutput, check_source, device_blocks, pipe_blocks
    from runtime.stream import stream_blocks
    from seld_edge.formats.label_rate import DCASE_LABEL_RATE_HZ

    config = meta.feature_config
    block_frames = max(1, round(block_ms / 1000.0 * config.sample_rate))
    if device is not None:
        check_source(config, channels, rate, f"--device {device}")
        blocks: Iterable = device_blocks(device, config, block_frames)
        source = device
    else:
        blocks = pipe_blocks(sys.stdin.buffer, config, block_frames, channels, rate)
        source = "stdin"
    # Human-readable lines go to stderr when stdout carries JSON lines for another program.
    say = (lambda line: click.echo(line, err=True)) if json_lines else click.echo
    path = out_dir / LIVE_CSV
    with LiveOutput(path, meta, click.echo if json_lines else None) as output:
        for frame in stream_blocks(meta, model, blocks, lookahead, stats):
            output.write(frame)
            if not json_lines:
                seconds = frame.index / DCASE_LABEL_RATE_HZ
                for e in frame.events:
                    say(f"{source}  {seconds:8.1f} s  {meta.class_names[e.class_index]:<20} "
                        f"azimuth {e.azimuth:6.1f}  elevation {e.elevation:5.1f}")  # fmt: skip
    say(f"per-block latency ({block_ms} ms blocks): {stats.format()}")
    say(f"wrote {path}")


def register(main: click.Group) -> None:
    """The runtime's commands (entry point ``seld_edge.commands``: runtime)."""
    main.add_command(run_command)
