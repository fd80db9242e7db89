"""Exported ONNX -> TensorRT engine, the way TensorRT 10.x's Python samples build one, plus what makes
an engine usable where it is built by hand: the equivalent trtexec command, build_engine.sh, and the
JSON sidecar every engine carries (runtime/trt_sidecar.py).

    seld-edge export CHECKPOINT -o model.onnx --trt [--fp16] [--int8 --calib DIR] [--workspace GB]
        [--min-seconds a --opt-seconds b --max-seconds c] [--plugin LIB]

Where ``tensorrt`` imports, build_engine() parses the ONNX file (reporting parser errors node by node),
sets one optimization profile over the time axis, FP16 / INT8 (entropy calibration on features of
the calibration audio), reuses a timing cache kept beside the engine and writes engine + sidecar.
Where it does not (these development machines), write_build_script() leaves a build_engine.sh that
runs trtexec with the same precision, shapes, plugin and timing cache, then completes the sidecar with
``python -m export.trt_build finish ENGINE``: that is how engines get built on the Jetson itself.

Nothing here imports torch; tensorrt (and pycuda, for the GPU name and INT8 calibration) only inside
the functions that need them.
"""

import importlib.util
import math
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.trt_engine import load_scan_plugin, require_tensorrt_10
from runtime.trt_sidecar import PLUGIN_ENV, Sidecar, gpu_name, sidecar_path
from seld_edge.errors import SeldEdgeError
from seld_edge.io import atomic_write, atomic_write_text, file_sha256
from seld_edge.model_metadata import INPUT_NAME, ModelMetadata

PLUGIN_OP = "SelectiveScan"
DEFAULT_PLUGIN = Path("~/.seld-edge/lib/libseld_scan_plugin.so")  # where jetson/install.sh puts it
TIMING_CACHE = "tensorrt.timing.cache"  # one per output folder, shared by every build there
TRTEXEC_DEFAULT = "/usr/src/tensorrt/bin/trtexec"  # JetPack's location; trtexec is not on PATH there
Log = Callable[[str], None]


@dataclass(frozen=True)
class EngineOptions:
    """Every engine-build setting; seconds are clip lengths the engine's profile must cover."""

    fp16: bool = False
    int8: bool = False
    calib: Path | None = None  # audio folder whose features calibrate INT8
    workspace_gb: float = 2.0
    min_seconds: float | None = None  # None: one label frame, the shortest input a stream starts with
    opt_seconds: float | None = None  # None: the model's own inference window
    max_seconds: float = 60.0
    plugin: Path | None = None  # the SelectiveScan plugin library (models with a selective scan)

    def __post_init__(self) -> None:
        if self.int8 and self.calib is None:
            raise SeldEdgeError("--int8 needs --calib DIR: audio whose features calibrate the INT8 ranges")
        if self.calib is not None and not self.int8:
            raise SeldEdgeError("--calib is for --int8 only")
        if self.workspace_gb <= 0:
            raise SeldEdgeError(f"--workspace must be positive, got {self.workspace_gb} GB")
        low = 0.0 if self.min_seconds is None else self.min_seconds
        opt = self.max_seconds if self.opt_seconds is None else self.opt_seconds
        if (self.min_seconds is not None and low <= 0) or not low <= opt <= self.max_seconds or self.max_seconds <= 0:
            raise SeldEdgeError(
                f"clip lengths must satisfy 0 < min ({low:g}) <= opt ({opt:g}) <= max ({self.max_seconds:g})"
            )

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


@dataclass(frozen=True)
class ShapeProfile:
    """The optimization profile of the features input: (batch, C, T, F) at min / opt / max.

    Batch is 1: the Jetson runs one window at a time (a live stream); the runtime loops over a batch.
    T is a whole number of label frames, as the exported graph requires.
    """

    min: tuple[int, int, int, int]
    opt: tuple[int, int, int, int]
    max: tuple[int, int, int, int]

    def as_trtexec(self, which: str) -> str:
        return f"{INPUT_NAME}:{'x'.join(str(d) for d in getattr(self, which))}"


def shape_profile(meta: ModelMetadata, options: EngineOptions) -> ShapeProfile:
    """min / opt / max shapes for the options' clip lengths: min defaults to one label frame (a stream's
    first call), opt to the model's window."""
    config = meta.feature_config  # single-input models (a composite's engine is not built yet)
    per_label, rate = meta.frames_per_label(meta.inputs[0]), meta.label_rate_hz
    low = 1 if options.min_seconds is None else max(1, math.ceil(options.min_seconds * rate - 1e-9))
    high = math.floor(options.max_seconds * rate + 1e-9)
    if high < low:
        raise SeldEdgeError(f"no whole {1 / rate:g} s label frame between {low / rate:g} and {options.max_seconds:g} s")
    window = meta.window_labels
    best = window if options.opt_seconds is None else round(options.opt_seconds * rate)
    best = min(max(best, low), high)

    def shape(labels: int) -> tuple[int, int, int, int]:
        return (1, config.out_channels, labels * per_label, config.n_bins)

    return ShapeProfile(shape(low), shape(best), shape(high))


def plugin_nodes(onnx_path: Path) -> int:
    """How many SelectiveScan nodes the graph has (0: no plugin needed)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return sum(node.op_type == PLUGIN_OP for node in graph.node)


def resolve_plugin(options: EngineOptions, needed: bool) -> Path | None:
    """The plugin library a graph with SelectiveScan nodes needs: --plugin, else the default location
    (kept as ~/..., so that a script or sidecar written here finds it in the device user's home)."""
    if not needed:
        return None
    return options.plugin or DEFAULT_PLUGIN


def engine_paths(onnx_path: Path) -> tuple[Path, Path, Path]:
    """(engine, INT8 calibration cache, timing cache) beside the ONNX file."""
    return onnx_path.with_suffix(".engine"), onnx_path.with_suffix(".calib.cache"), onnx_path.parent / TIMING_CACHE


def trtexec_command(
    onnx_path: Path, profile: ShapeProfile, options: EngineOptions, plugin: Path | None, trtexec: str = "trtexec"
) -> list[str]:
    """The trtexec call equivalent to build_engine(): same shapes, precision, workspace, timing cache, plugin.

    File names are relative to the ONNX file's folder (build_engine.sh runs there), except the plugin.
    The engine goes to a temporary name that the script renames, so a failed build leaves no engine.
    """
    engine, calib_cache, timing_cache = engine_paths(onnx_path)
    command = [
        trtexec,
        f"--onnx={onnx_path.name}",
        f"--saveEngine={engine.name}.partial",
        f"--minShapes={profile.as_trtexec('min')}",
        f"--optShapes={profile.as_trtexec('opt')}",
        f"--maxShapes={profile.as_trtexec('max')}",
        f"--memPoolSize=workspace:{round(options.workspace_gb * 1024)}",  # MiB, understood by 8.6 and 10.x
        f"--timingCacheFile={timing_cache.name}",
    ]
    if options.fp16 or options.int8:
        command.append("--fp16")  # INT8 builds let layers without INT8 kernels run in FP16
    else:
        command.append("--noTF32")  # FP32 means FP32: TF32 (on by default since Ampere) rounds to 10-bit mantissas
    if options.int8:
        command += ["--int8", f"--calib={calib_cache.name}"]
    if plugin is not None:
        command.append(f"--dynamicPlugins={plugin}")
    command.append("--skipInference")
    return command


def write_build_script(onnx_path: Path, meta: ModelMetadata, options: EngineOptions, plugin: Path | None) -> Path:
    """build_engine.sh beside the ONNX file, and the sidecar it completes; returns the script's path.

    The folder can be copied to the device as is: the script cds into its own folder, finds trtexec
    (TRTEXEC, PATH, JetPack's location) and the plugin (SELD_SCAN_PLUGIN overrides), and refuses with one
    line when one is missing, or, for INT8, when the calibration cache is (it is made by a Python build).
    """
    profile = shape_profile(meta, options)
    engine, calib_cache, _ = engine_paths(onnx_path)
    script = onnx_path.parent / "build_engine.sh"
    command = trtexec_command(onnx_path, profile, options, None, '"$TRTEXEC"')
    if plugin is not None:
        command.insert(-1, '--dynamicPlugins="$PLUGIN"')
    lines = [
        "#!/usr/bin/env bash",
        f"# Builds {engine.name} from {onnx_path.name} ({meta.model}, {options.precision}) with TensorRT's trtexec:",
        "# the command `seld-edge export --trt` runs where the tensorrt Python module imports. Run it on the",
        "# device that will run the engine (an engine is tied to its GPU and TensorRT version).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        f'TRTEXEC="${{TRTEXEC:-$(command -v trtexec || echo {TRTEXEC_DEFAULT})}}"',
        'PYTHON="${PYTHON:-python3}"  # the interpreter seld-edge is installed in',
        'die() { echo "build_engine.sh: $*" >&2; exit 2; }',
        '[ -x "$TRTEXEC" ] || die "trtexec not found (set TRTEXEC=/path/to/trtexec)"',
    ]
    if plugin is not None:
        home = str(plugin).replace("~", "$HOME", 1) if str(plugin).startswith("~/") else str(plugin)
        lines += [
            f'PLUGIN="${{{PLUGIN_ENV}:-{home}}}"',
            '[ -f "$PLUGIN" ] || die "SelectiveScan plugin library not found at $PLUGIN '
            f'(jetson/install.sh builds it; or set {PLUGIN_ENV})"',
        ]
    if options.int8:
        lines.append(
            f'[ -f {shlex.quote(calib_cache.name)} ] || die "INT8 needs {calib_cache.name}: run seld-edge export '
            '--trt --int8 --calib DIR where the tensorrt module imports (it writes the cache), then copy it here"'
        )
    quoted = [a if a.startswith(('"', '--dynamicPlugins="')) else shlex.quote(a) for a in command]  # ours stay
    lines += [
        " ".join(quoted) + ' "$@"',
        f"mv {shlex.quote(engine.name + '.partial')} {shlex.quote(engine.name)}",
        f'"$PYTHON" -m export.trt_build finish {shlex.quote(engine.name)}',
        f'echo "built {engine.name}"',
    ]
    write_sidecar(engine, onnx_path, meta, options, profile, plugin, tensorrt_version=None, gpu=None)
    atomic_write_text(script, "\n".join(lines) + "\n")
    script.chmod(0o755)
    return script


def write_sidecar(
    engine: Path,
    onnx_path: Path,
    meta: ModelMetadata,
    options: EngineOptions,
    profile: ShapeProfile,
    plugin: Path | None,
    tensorrt_version: str | None,
    gpu: str | None,
) -> Sidecar:
    """The engine's JSON sidecar; TensorRT version, GPU and engine hash stay empty until the engine exists."""
    sidecar = Sidecar(
        metadata=meta,
        tensorrt_version=tensorrt_version,
        gpu=gpu,
        precision=options.precision,
        profile={"min": list(profile.min), "opt": list(profile.opt), "max": list(profile.max)},
        plugin=None if plugin is None else str(plugin),
        workspace_gb=options.workspace_gb,
        onnx_sha256=file_sha256(onnx_path),
        engine_sha256=file_sha256(engine) if engine.exists() and tensorrt_version else None,
    )
    atomic_write_text(sidecar_path(engine), sidecar.to_json())
    return sidecar


def finish(engine: Path) -> Sidecar:
    """After trtexec built ENGINE: record this machine's TensorRT version and GPU and the engine's hash."""
    trt = _tensorrt()
    sidecar = Sidecar.read(engine)
    if not engine.is_file():
        raise SeldEdgeError(f"{engine}: no engine to describe (did trtexec succeed?)")
    done = sidecar.built(trt.__version__, gpu_name(), file_sha256(engine))
    atomic_write_text(sidecar_path(engine), done.to_json())
    return done


def tensorrt_available() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def _tensorrt() -> Any:
    """The tensorrt module (10 or later), or a one-line error naming where it comes from."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise SeldEdgeError(
            f"TensorRT's Python module does not import ({err}); on a Jetson it comes with JetPack"
        ) from None
    require_tensorrt_10(trt.__version__)
    return trt


def build_engine(onnx_path: Path, meta: ModelMetadata, options: EngineOptions, plugin: Path | None, log: Log) -> Path:
    """Build ONNX -> engine with the TensorRT Python API (10.x samples' flow); returns the engine path.

    Stages, one progress line each: plugin, parse, profile/precision, (calibration,) build, write.
    The engine and its sidecar are written atomically; the timing cache is read before and saved after.
    """
    trt = _tensorrt()
    major = int(trt.__version__.split(".")[0])
    if major >= 11 and (options.int8 or options.fp16):
        raise SeldEdgeError(
            f"TensorRT {trt.__version__} builds strongly typed networks only: INT8 needs explicit quantization "
            "(Q/DQ nodes) and FP16 an FP16 graph; build FP32 here, or use TensorRT 10.x (JetPack 6/7) for --fp16/--int8"
        )
    engine_path, calib_cache, timing_cache = engine_paths(onnx_path)
    profile_shapes = shape_profile(meta, options)
    stages = 6 if options.int8 else 5
    step = iter(range(1, stages + 1))
    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    log(f"engine: [{next(step)}/{stages}] plugin {plugin or 'not needed'}")
    if plugin is not None:
        load_scan_plugin(trt.get_plugin_registry(), plugin.expanduser())
    log(f"engine: [{next(step)}/{stages}] parsing {onnx_path.name}")
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        lines = [f"node {e.node()} {e.node_name()!r} ({e.node_operator()}): {e.desc()}" for e in errors]
        raise SeldEdgeError(f"{onnx_path}: TensorRT's ONNX parser refused the graph: " + "; ".join(lines))
    log(f"engine: [{next(step)}/{stages}] {options.precision}, {options.workspace_gb:g} GB workspace, "
        f"profile {profile_shapes.min[2]}/{profile_shapes.opt[2]}/{profile_shapes.max[2]} frames")  # fmt: skip
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_gb * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, profile_shapes.min, profile_shapes.opt, profile_shapes.max)
    config.add_optimization_profile(profile)
    if options.fp16 or options.int8:
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: Ampere and later (Orin) would round FP32 matmuls
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    if options.int8:
        from export.trt_calibration import calibration_batches, entropy_calibrator

        log(f"engine: [{next(step)}/{stages}] INT8 calibration on {options.calib}")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = entropy_calibrator(
            calibration_batches(options.calib, meta, profile_shapes.opt[2]), calib_cache
        )
        config.set_calibration_profile(profile)
    log(f"engine: [{next(step)}/{stages}] building (minutes on a Jetson)")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SeldEdgeError(f"{onnx_path}: TensorRT could not build an engine (its log above says why)")
    log(f"engine: [{next(step)}/{stages}] writing {engine_path.name} and {sidecar_path(engine_path).name}")
    atomic_write(engine_path, lambda handle: handle.write(memoryview(serialized)))
    atomic_write(timing_cache, lambda handle: handle.write(memoryview(config.get_timing_cache().serialize())))
    write_sidecar(engine_path, onnx_path, meta, options, profile_shapes, plugin, trt.__version__, gpu_name())
    return engine_path


def main(argv: list[str]) -> int:
    """``python -m export.trt_build finish ENGINE``: the last step of build_engine.sh."""
    if len(argv) != 2 or argv[0] != "finish":
        print("usage: python -m export.trt_build finish ENGINE", file=sys.stderr)
        return 2
    try:
        done = finish(Path(argv[1]))
    except SeldEdgeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{sidecar_path(Path(argv[1]))}: TensorRT {done.tensorrt_version} on {done.gpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
