"""``seld-edge bench zoo``: one table of every model of the zoo, how big, how fast, how accurate, whether it
exports, in the spirit of Ultralytics' ``yolo benchmark``.

For each model (random weights, or a checkpoint given for it) one row: parameters and GMACs per clip
(seld_edge.models.complexity: the runtime's windows), the ONNX export (size, time, the TensorRT 10.3
check's verdict), latency per clip on one pinned core with one thread per pool for PyTorch eager (the
torch twin's features, the network, the same windowing and post-processing) and the runtime (numpy
features, ONNX Runtime, post-processing), timed in alternating rounds after a warm-up, p50 and p95;
their ratio and the runtime's speed against real time; the peak resident memory of a fresh runtime
process running the clip (``seld-edge run``); the parity max abs error against PyTorch on the same
features; with data, the metric of the runtime's events on its held-out split. A model that fails at
any step gets its row with the failure, and the others go on.

Ideal time on the target devices, on paper (a roofline lower bound): a clip cannot take less than its
multiply-accumulates at the device's dense FP16 peak, nor less than its bytes at the device's memory
bandwidth, with every weight read once and every activation (each layer's output) written once, in
FP16. The device figures are NVIDIA's published peaks:
- Jetson Orin Nano Super: about 17 TFLOPS FP16 dense (67 sparse INT8 TOPS at 1.02 GHz), 102 GB/s.
- Jetson AGX Orin 64 GB: about 43 TFLOPS FP16 dense (Ampere tensor cores at 1.3 GHz), 204.8 GB/s.
- Jetson AGX Thor (T5000): 2070 FP4 TFLOPS sparse, so about 259 TFLOPS FP16 dense (halving for
  density and for each doubling of precision), 273 GB/s.
Measured CPU figures stand beside them; real Jetson figures come from ``jetson/bench.sh``, which runs
this same command on the device.
"""

import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seld_edge.audio import write_audio
from seld_edge.benchmark import one_core, timings_in_turns
from seld_edge.io import atomic_write_text

DEVICES: dict[str, tuple[float, float]] = {
    "Orin Nano Super": (17e12, 102e9),
    "AGX Orin": (43e12, 204.8e9),
    "AGX Thor": (259e12, 273e9),
}
"""Device: (dense FP16 FLOP/s, memory bytes/s); see the module docstring for the sources."""
FP16_BYTES = 2


@dataclass
class ZooRow:
    """One model's results; None where a step failed or does not apply."""

    model: str
    status: str = "ok"
    parameters: int | None = None
    gmacs: float | None = None
    onnx_mb: float | None = None
    export_s: float | None = None
    tensorrt_check: str | None = None
    eager_p50_ms: float | None = None
    eager_p95_ms: float | None = None
    runtime_p50_ms: float | None = None
    runtime_p95_ms: float | None = None
    speedup: float | None = None
    realtime: float | None = None
    peak_rss_mb: float | None = None
    parity_max_abs: float | None = None
    scores: dict[str, float] | None = None
    ideal_ms: dict[str, float] = field(default_factory=dict)


def ideal_ms(macs: int, parameters: int, activations: int) -> dict[str, float]:
    """The roofline lower bound per clip on each device of DEVICES, in milliseconds (module docstring)."""
    traffic = (parameters + activations) * FP16_BYTES
    return {device: 1e3 * max(2 * macs / flops, traffic / bandwidth) for device, (flops, bandwidth) in DEVICES.items()}


def bench_model(
    name: str, seconds: float, work: Path, checkpoint: Path | None = None, data: Path | None = None, rounds: int = 5
) -> ZooRow:
    """One row; a failure at any step ends the row there, with the step and its message."""
    from seld_edge.models.complexity import model_complexity

    row = ZooRow(name)
    step = "size"
    try:
        cost = model_complexity(name, seconds)
        row.parameters, row.gmacs = cost.parameters, cost.gmacs
        row.ideal_ms = ideal_ms(cost.macs, cost.parameters, cost.activations)
        step = "export"
        run_dir = checkpoint or _untrained(name, work / "run")
        model_path = work / f"{name}.onnx"
        row.onnx_mb, row.export_s, row.tensorrt_check = _export(run_dir, model_path)
        step = "latency"
        timings = _latencies(run_dir, model_path, seconds, rounds)
        row.eager_p50_ms, row.eager_p95_ms = _percentiles(timings["eager"])
        row.runtime_p50_ms, row.runtime_p95_ms = _percentiles(timings["runtime"])
        row.speedup = row.eager_p50_ms / row.runtime_p50_ms
        row.realtime = seconds * 1e3 / row.runtime_p50_ms
        step = "memory"
        row.peak_rss_mb = _peak_rss_mb(model_path, seconds, work)
        step = "parity"
        row.parity_max_abs, row.scores = _parity(run_dir, model_path, seconds, data)
    except Exception as err:  # a model that fails at any step gets its row; the others go on
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        row.status = f"failed at {step}: {reason}"
    return row


def _untrained(name: str, folder: Path) -> Path:
    from training.untrained import untrained_checkpoint

    return untrained_checkpoint(name, folder, random_normaliser=False)


def _export(run_dir: Path, model_path: Path) -> tuple[float, float, str]:
    from export.onnx_export import Exporter

    result = Exporter(run_dir, log=lambda _: None)("onnx", model_path)
    errors = sum(f.severity == "error" for f in result.findings)
    check = f"errors {errors}, warnings {len(result.findings) - errors}" if result.findings else "clean"
    return result.size_bytes / 1e6, result.seconds, check


def _latencies(run_dir: Path, model_path: Path, seconds: float, rounds: int) -> dict[str, list[float]]:
    """Per-clip times of PyTorch eager and the runtime, audio to events, in alternating rounds on one core."""
    import torch

    from runtime.model import load_model
    from runtime.pipeline import clip_events
    from seld_edge.synth import scene_audio
    from training.checkpoint import load_checkpoint
    from training.frontend import FeatureExtractor
    from training.predict import TorchModel

    runtime = load_model(model_path, threads=1)
    meta = runtime.metadata
    system, _ = load_checkpoint(run_dir)
    eager = TorchModel(system, meta)
    audio = {i.name: scene_audio(i.feature_config.audio_format, seconds) for i in meta.inputs}
    twins = {i.name: FeatureExtractor(i.feature_config) for i in meta.inputs}

    def run_eager() -> object:
        with torch.inference_mode():
            features = {name: twin(torch.from_numpy(audio[name])[None])[0].numpy() for name, twin in twins.items()}
        return clip_events(eager, features)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with one_core():
            calls = {"eager": run_eager, "runtime": runtime_call(runtime, seconds, audio)}
            return timings_in_turns(calls, rounds=rounds, warmup=1)
    finally:
        torch.set_num_threads(threads)


def runtime_call(model: Any, seconds: float, audio: dict[str, np.ndarray] | None = None) -> Callable[[], object]:
    """The runtime's work on one clip, audio to events (numpy features, the model, post-processing), as a
    call to time; audio by input name, by default a generated scene in each input's recording format."""
    from runtime.pipeline import clip_events
    from seld_edge.features import compute_features
    from seld_edge.synth import scene_audio

    meta = model.metadata
    audio = audio or {i.name: scene_audio(i.feature_config.audio_format, seconds) for i in meta.inputs}
    return lambda: clip_events(model, {i.name: compute_features(audio[i.name], i.feature_config) for i in meta.inputs})


def _percentiles(times: Sequence[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 95) * 1e3)


# The peak is read from /proc/self/status (VmHWM, the high-water mark of this program's memory since its
# exec): getrusage's ru_maxrss also counts the moments after the fork, when the child still shares the
# whole parent process (here a benchmark holding PyTorch and the model: 415 MB for a 142 MB run).
_PEAK_RSS = """
import re, sys
from seld_edge.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    status = open("/proc/self/status").read()
    print(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1), file=sys.stderr)
"""


def _peak_rss_mb(model_path: Path, seconds: float, work: Path) -> float:
    """Peak resident memory of a fresh `seld-edge run` process on one clip of every recording it reads."""
    from runtime.model import load_model
    from seld_edge.synth import scene_audio

    meta = load_model(model_path).metadata
    clip_dir = work / "clip"
    for model_input in meta.inputs:
        config = model_input.feature_config
        audio = scene_audio(config.audio_format, seconds)
        write_audio(clip_dir / config.audio_folder / "dev-test-bench" / "clip.wav", audio, config.sample_rate)
    source = clip_dir if len(meta.inputs) > 1 else clip_dir / meta.inputs[0].feature_config.audio_folder
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, "run", str(model_path), str(source), "-o", str(work / "rss_out"),
         "--threads", "1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"seld-edge run failed: {done.stderr.strip().splitlines()[-2:]}")
    return int(done.stderr.strip().splitlines()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def _parity(run_dir: Path, model_path: Path, seconds: float, data: Path | None) -> tuple[float, dict | None]:
    from export.parity import compare, data_clips, generated_clip
    from runtime.model import load_model
    from training.checkpoint import checkpoint_metadata, load_checkpoint, resolve_checkpoint

    system, info = load_checkpoint(run_dir)
    torch_meta = checkpoint_metadata(resolve_checkpoint(run_dir), system, info)
    runtime = load_model(model_path)
    metric = "dcase2025" if runtime.metadata.format.csv_form == "dcase2025" else "dcase2023"
    clips = data_clips(data, runtime.metadata) if data is not None else [generated_clip(runtime.metadata, seconds)]
    report = compare(system, torch_meta, runtime, clips, metric, progress=False)
    return report["max_abs_error"], report.get("scores_runtime")


# --------------------------------------------------------------------------------------------------
# the whole zoo and its reports

COLUMNS = (
    ("model", "model"), ("status", "status"), ("parameters", "params (M)"), ("gmacs", "GMACs"),
    ("onnx_mb", "ONNX MB"), ("export_s", "export s"), ("tensorrt_check", "TensorRT 10.3 check"),
    ("eager_p50_ms", "eager p50 ms"), ("eager_p95_ms", "eager p95 ms"), ("runtime_p50_ms", "runtime p50 ms"),
    ("runtime_p95_ms", "runtime p95 ms"), ("speedup", "runtime/eager"), ("realtime", "x real time"),
    ("peak_rss_mb", "peak RSS MB"), ("parity_max_abs", "parity max abs"),
)  # fmt: skip


def zoo_models(names: Sequence[str] | None = None) -> list[str]:
    """Every registered model that makes events (the halves of a composite only run composed)."""
    from seld_edge.models import CompositeCard, list_models, model_card

    def complete(name: str) -> bool:
        card = model_card(name)
        return isinstance(card, CompositeCard) or card.format(card.defaults).decodable

    return [name for name in (names or list_models()) if complete(name)]


def bench_zoo(
    names: Sequence[str] | None,
    seconds: float,
    out_dir: Path,
    checkpoints: dict[str, Path] | None = None,
    data: Path | None = None,
    rounds: int = 5,
    log: Callable[[str], None] = print,
) -> list[ZooRow]:
    """Every model's row, written to OUT_DIR as zoo.csv, zoo.md, zoo.json and zoo.png."""
    rows = []
    for name in zoo_models(names):
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"bench-zoo-{name}-") as work:
            row = bench_model(name, seconds, Path(work), (checkpoints or {}).get(name), data, rounds)
        log(f"{name}: {row.status} ({time.perf_counter() - started:.0f} s)")
        rows.append(row)
    write_reports(rows, seconds, out_dir)
    return rows


def bench_exported(folder: Path, seconds: float, rounds: int = 5) -> list[ZooRow]:
    """The runtime's columns for every exported model (.onnx, .engine) in a folder, without torch: what a
    Jetson measures of models exported on a PC (jetson/bench.sh)."""
    from runtime.model import load_model

    rows = []
    for path in sorted([*Path(folder).glob("*.onnx"), *Path(folder).glob("*.engine")]):
        row = ZooRow(path.name)
        step = "load"
        try:
            model = load_model(path, threads=1)
            row.model = f"{model.metadata.model} ({path.name})"
            step = "latency"
            with one_core():
                times = timings_in_turns({"runtime": runtime_call(model, seconds)}, rounds=rounds, warmup=1)["runtime"]
            row.runtime_p50_ms, row.runtime_p95_ms = _percentiles(times)
            row.realtime = seconds * 1e3 / row.runtime_p50_ms
            step = "memory"
            with tempfile.TemporaryDirectory(prefix="bench-zoo-") as work:
                row.peak_rss_mb = _peak_rss_mb(path, seconds, Path(work))
        except Exception as err:  # one model's failure is its row
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            row.status = f"failed at {step}: {reason}"
        rows.append(row)
    return rows


def _cell(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key == "parameters":
        return f"{value / 1e6:.3f}"
    if key == "parity_max_abs":
        return f"{value:.1e}"
    if key in ("speedup", "realtime"):
        return f"{value:.1f}x"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def markdown(rows: Sequence[ZooRow], seconds: float) -> str:
    """The results table, then the roofline lower bounds per device beside the measured CPU latency."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " | scores |"
    lines = [f"Per {seconds:g} s clip, one CPU core, one thread per pool.", "", head,
             "|" + "---|" * (len(COLUMNS) + 1)]  # fmt: skip
    for row in rows:
        data = asdict(row)
        scores = ", ".join(f"{k} {v:.3f}" for k, v in (row.scores or {}).items()) or "-"
        lines.append("| " + " | ".join(_cell(data[key], key) for key, _ in COLUMNS) + f" | {scores} |")
    head = "| model | runtime on this CPU | " + " | ".join(DEVICES) + " |"
    lines += ["", "Ideal time per clip on paper (roofline lower bound, FP16), ms:", "", head,
              "|---|---|" + "---|" * len(DEVICES)]  # fmt: skip
    for row in rows:
        ideal = " | ".join(f"{row.ideal_ms[d]:.3f}" if d in row.ideal_ms else "-" for d in DEVICES)
        lines.append(f"| {row.model} | {_cell(row.runtime_p50_ms, 'runtime_p50_ms')} | {ideal} |")
    return "\n".join(lines) + "\n"


def write_reports(rows: Sequence[ZooRow], seconds: float, out_dir: Path) -> None:
    """zoo.csv (one line a model, ideal times as columns), zoo.md, zoo.json and zoo.png in out_dir."""
    out_dir = Path(out_dir)
    fields = [key for key, _ in COLUMNS] + ["scores"] + [f"ideal_ms {d}" for d in DEVICES]
    lines = []
    for row in rows:
        data = asdict(row)
        ideal = data.pop("ideal_ms")
        data["scores"] = json.dumps(row.scores) if row.scores else ""
        lines.append({**data, **{f"ideal_ms {d}": ideal.get(d, "") for d in DEVICES}})
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "zoo.csv"
        with open(table, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(lines)
        atomic_write_text(out_dir / "zoo.csv", table.read_text())
    atomic_write_text(out_dir / "zoo.md", markdown(rows, seconds))
    atomic_write_text(out_dir / "zoo.json", json.dumps([asdict(r) for r in rows], indent=2))
    plot(rows, seconds, out_dir / "zoo.png")


def plot(rows: Sequence[ZooRow], seconds: float, path: Path) -> None:
    """Latency against GMACs, one point per model and backend, and the real-time line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from seld_edge.io import atomic_write

    figure, axes = plt.subplots(figsize=(9, 6))
    for key, marker, label in (
        ("eager_p50_ms", "o", "PyTorch eager"),
        ("runtime_p50_ms", "s", "runtime (ONNX Runtime)"),
    ):
        points = [(r.gmacs, getattr(r, key), r.model) for r in rows if r.gmacs and getattr(r, key)]
        if points:
            axes.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, label=label)
            for x, y, name in points:
                axes.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes.axhline(seconds * 1e3, color="red", linestyle="--", label=f"real time ({seconds:g} s)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel(f"GMACs per {seconds:g} s clip")
    axes.set_ylabel(f"latency per {seconds:g} s clip, ms (one CPU core, p50)")
    axes.set_title("seld-edge zoo: latency against compute")
    axes.legend()
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=120))
    plt.close(figure)


def bench_zoo_lines(rows: Sequence[ZooRow], seconds: float) -> Iterator[str]:
    yield from markdown(rows, seconds).splitlines()
    failed = [r for r in rows if r.status != "ok"]
    if failed:
        yield f"{len(failed)} of {len(rows)} models failed: {', '.join(r.model for r in failed)}"
    if any(math.isfinite(r.speedup or math.nan) and r.speedup < 1.5 for r in rows):
        slow = [f"{r.model} ({r.speedup:.2f}x)" for r in rows if r.speedup and r.speedup < 1.5]
        yield f"runtime under 1.5x PyTorch eager: {', '.join(slow)}"
