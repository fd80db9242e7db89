"""The torch-free runtime: `seld-edge run` offline and streamed, on small real ONNX models.

The models are built here with onnx.helper so their outputs are predictable: per 100 ms label frame,
track 0 of class 0 is the mean intensity vector (the direction of arrival, scaled so a plane wave
gives a norm of about 1) and track 0 of class 1 points along x with length ReLU(mean W log-mel / 10
+ 3.5), active above -30 dB. Everything else is zero.
"""

import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf

from runtime.model import CPU, CUDA, TENSORRT, execution_providers, load_model
from runtime.pipeline import clip_events
from runtime.stream import FeatureStream, LatencyStats, StreamingSeld
from seld_edge.audio import write_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.features import FeatureConfig, compute_features, feature_config, filterbank_for
from seld_edge.features.functional import power_to_db
from seld_edge.formats import STARSS23_CLASSES, Event, read_events
from seld_edge.model_metadata import INPUT_NAME, ModelInput, ModelMetadata
from seld_edge.postprocess import PostProcessing
from seld_edge.synth import generate_scene
from tests.conftest import BLOCK_TORCH, SAMPLE_RATE, plane_wave_foa

onnx = pytest.importorskip("onnx", reason="building test models needs the onnx package (the [export] extra)")

NUM_CLASSES = len(STARSS23_CLASSES)
PER_LABEL = 5


def metadata(config: FeatureConfig, median_size: int = 3, window_labels: int = 50) -> ModelMetadata:
    return ModelMetadata(
        "pool_test", {}, (ModelInput(INPUT_NAME, config),), STARSS23_CLASSES, "multi_accdoa", {}, ("accdoa",), 10.0,
        window_labels, PostProcessing(median_size=median_size), "0" * 64, "0.1.0",
    )  # fmt: skip


def build_model(
    path: Path,
    meta: ModelMetadata | None,
    frames: int | str = "frames",
    pool: int = PER_LABEL,
    classes: int = NUM_CLASSES,
    nan: bool = False,
    reshape_labels: int = 0,
) -> Path:
    """features (B, 7, T, 64) -> accdoa (B, T/5, 117): AveragePool over 5 frames, then two linear maps.

    frames: the input's time axis, a name (dynamic, as exported models must be) or a fixed size. pool,
    classes and nan make graphs that do not fit their metadata: another pooling, another class count, a
    NaN weight. reshape_labels, when not 0, fixes the label frames of a Reshape: a time axis that is
    dynamic in name only, as a graph traced with a constant shape has.
    """
    from onnx import TensorProto, helper, numpy_helper

    config = feature_config("foa_logmel_iv") if meta is None else meta.feature_config
    bins, channels, width = config.n_bins, config.out_channels, 9 * classes
    # IV bands are 0.75 * direction * (sum of the band's mel weights) for a plane wave
    band_sums = filterbank_for(config).sum(axis=0)
    w_direction = np.zeros((channels * bins, width), np.float32)
    for coord in range(3):  # IV x, y, z (channels 4, 5, 6) -> track 0, class 0, coordinate x, y, z
        w_direction[(4 + coord) * bins : (5 + coord) * bins, coord * classes] = 1.4 / (0.75 * band_sums * bins)
    w_level = np.zeros((channels * bins, width), np.float32)
    w_level[:bins, 1] = 1.0 / (10 * bins)  # mean W log-mel / 10 -> track 0, class 1, x
    w_level[0, 0] = np.nan if nan else 0.0
    b_level = np.zeros(width, np.float32)
    b_level[1] = 3.5
    nodes = [
        helper.make_node("AveragePool", [INPUT_NAME], ["pooled"], kernel_shape=[pool, 1], strides=[pool, 1]),
        helper.make_node("Transpose", ["pooled"], ["labels"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["labels", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w_direction"], ["direction"]),
        helper.make_node("MatMul", ["flat", "w_level"], ["level"]),
        helper.make_node("Add", ["level", "b_level"], ["biased"]),
        helper.make_node("Relu", ["biased"], ["loud"]),
        helper.make_node("Add", ["direction", "loud"], ["accdoa"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([0, reshape_labels, -1], np.int64), "shape"),
        numpy_helper.from_array(w_direction, "w_direction"),
        numpy_helper.from_array(w_level, "w_level"),
        numpy_helper.from_array(b_level, "b_level"),
    ]
    graph = helper.make_graph(
        nodes,
        "pool_test",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", channels, frames, bins])],
        [helper.make_tensor_value_info("accdoa", TensorProto.FLOAT, ["batch", "labels", width])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    if meta is not None:
        helper.set_model_props(model, meta.to_props())
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "pool.onnx", metadata(feature_config("foa_logmel_iv")))


@pytest.fixture
def main():
    from seld_edge.cli import main

    return main


def scene_clip(seconds: float = 4.0) -> np.ndarray:
    """1 s of quiet noise, a plane wave from azimuth 60 degrees, 1 s of quiet noise (label frames 10..29 loud)."""
    quiet = 0.003 * np.random.default_rng(1).standard_normal((4, SAMPLE_RATE)).astype(np.float32)
    return np.concatenate([quiet, plane_wave_foa(seconds - 2.0, 60.0, 0.0), quiet], axis=1)


def activity(events: list[Event], n_frames: int) -> np.ndarray:
    active = np.zeros((n_frames, NUM_CLASSES), bool)
    for e in events:
        active[e.frame, e.class_index] = True
    return active


def stream(
    model, audio: np.ndarray, block: int = SAMPLE_RATE // 10, lookahead: int = 0
) -> tuple[list[Event], int, StreamingSeld]:
    """Events, frame count and the streamer after feeding audio in blocks; frames must come in order."""
    streamer = StreamingSeld(model.metadata, model, lookahead)
    frames = [f for i in range(0, audio.shape[1], block) for f in streamer.push(audio[:, i : i + block])]
    frames += streamer.finish()
    assert [f.index for f in frames] == list(range(len(frames)))
    return [e for f in frames for e in f.events], len(frames), streamer


# --------------------------------------------------------------------------------------------------
# offline


def test_offline_run_writes_the_expected_events(main, cli, model_path, tmp_path):
    write_audio(tmp_path / "clip.wav", scene_clip(), SAMPLE_RATE)
    result = cli.invoke(main, ["run", str(model_path), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["clip.csv"]
    assert all(len(line.split(",")) == 7 for line in (tmp_path / "out/clip.csv").read_text().splitlines())
    events = read_events(tmp_path / "out/clip.csv")
    for class_index, azimuth in ((0, 60.0), (1, 0.0)):
        mine = [e for e in events if e.class_index == class_index]
        assert [e.frame for e in mine] == list(range(10, 30))
        assert all(abs(e.azimuth - azimuth) < 3.0 and abs(e.elevation) < 3.0 for e in mine)
    assert {e.class_index for e in events} == {0, 1}


def test_directory_run_with_progress(main, cli, model_path, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir(parents=True)
    write_audio(tmp_path / "in/a/one.wav", plane_wave_foa(1.0, -90.0, 0.0), SAMPLE_RATE)
    sf.write(tmp_path / "in/b/two.flac", plane_wave_foa(1.5, 30.0, 0.0).T, SAMPLE_RATE)
    result = cli.invoke(main, ["run", str(model_path), str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "2/2" in result.stderr and "wrote 2 CSV files" in result.stdout
    one, two = read_events(tmp_path / "out/one.csv"), read_events(tmp_path / "out/two.csv")
    assert {e.frame for e in one if e.class_index == 0} == set(range(10))
    assert {e.frame for e in two if e.class_index == 0} == set(range(15))
    assert abs(np.median([e.azimuth for e in one if e.class_index == 0]) + 90.0) < 3.0
    assert abs(np.median([e.azimuth for e in two if e.class_index == 0]) - 30.0) < 3.0


# --------------------------------------------------------------------------------------------------
# streaming


@pytest.mark.parametrize("kind", ["foa_logmel_iv", "stereo_logmel"])
@pytest.mark.parametrize("block", [7, 2400, 100_000])
def test_incremental_features_equal_the_offline_ones(kind, block):
    config = feature_config(kind, top_db=None)
    audio = np.random.default_rng(0).standard_normal((config.in_channels, 12_345)).astype(np.float32)
    features = FeatureStream(config)
    parts = [features.push(audio[:, i : i + block]) for i in range(0, audio.shape[1], block)]
    streamed = np.concatenate([*parts, features.finish()], axis=1)
    streamed[: config.in_channels] = power_to_db(streamed[: config.in_channels], None)
    offline = compute_features(audio, config)
    assert streamed.shape == offline.shape
    np.testing.assert_allclose(streamed, offline, atol=1e-4)


@pytest.mark.parametrize(("median_size", "lookahead"), [(5, 0), (3, 4)])
def test_stream_equals_offline_when_the_db_floor_is_off(tmp_path, median_size, lookahead):
    """Without top_db the only stream/offline difference is gone for this model (each label frame's
    outputs depend on its own features only): the events must be identical, which checks the STFT
    edges, the look-back ring, the partial last label frame, the look-ahead and the median's delay."""
    meta = metadata(feature_config("foa_logmel_iv", top_db=None), median_size=median_size)
    model = load_model(build_model(tmp_path / "m.onnx", meta))
    audio = generate_scene(12.0, np.random.default_rng(3))[0][:, :-1234]  # ends inside a label frame
    offline = clip_events(model, {INPUT_NAME: compute_features(audio, meta.feature_config)})
    streamed, n_frames, _ = stream(model, audio, lookahead=lookahead)
    assert n_frames == -(-meta.feature_config.n_frames(audio.shape[1]) // PER_LABEL)
    assert len(offline) > 20
    key = [(e.frame, e.class_index, e.source) for e in offline]
    assert [(e.frame, e.class_index, e.source) for e in streamed] == key
    np.testing.assert_allclose([e.azimuth for e in streamed], [e.azimuth for e in offline], atol=1e-3)


def test_stream_agrees_with_offline_on_a_scene(model_path):
    model = load_model(model_path)
    audio = generate_scene(20.0, np.random.default_rng(5))[0]
    offline = clip_events(model, {INPUT_NAME: compute_features(audio, model.metadata.feature_config)})
    streamed, n_frames, streamer = stream(model, audio)
    assert n_frames == 200 and streamer.stats.count == 200
    a, b = activity(offline, n_frames), activity(streamed, n_frames)
    either = (a | b).any(axis=1)
    assert either.sum() > 30
    print(
        f"stream/offline activity agreement: {(a == b).mean():.4f} of frame-class pairs, "
        f"{(a == b)[either].all(axis=1).mean():.4f} of the {either.sum()} frames with activity"
    )
    assert (a == b).mean() >= 0.9
    assert (a == b)[either].all(axis=1).mean() >= 0.9  # also on the frames where something is active


def test_streamed_cli_prints_latency_and_writes_the_offline_csv(main, cli, model_path, tmp_path):
    write_audio(tmp_path / "clip.wav", scene_clip(), SAMPLE_RATE)
    offline = cli.invoke(main, ["run", str(model_path), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "off")])
    streamed = cli.invoke(
        main, ["run", str(model_path), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "on"), "--stream"]
    )
    assert offline.exit_code == 0 and streamed.exit_code == 0, streamed.output
    assert "per-block latency (100 ms blocks): count 40, mean" in streamed.stdout
    assert "p95" in streamed.stdout and "max" in streamed.stdout
    assert sum("clip.wav" in line and "female_speech" in line for line in streamed.stdout.splitlines()) == 20
    assert (tmp_path / "on/clip.csv").read_bytes() == (tmp_path / "off/clip.csv").read_bytes()
    ahead = cli.invoke(
        main,
        ["run", str(model_path), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "ahead"), "--stream",
         "--lookahead-ms", "300"],
    )  # fmt: skip
    assert ahead.exit_code == 0, ahead.output
    assert (tmp_path / "ahead/clip.csv").read_bytes() == (tmp_path / "off/clip.csv").read_bytes()


def test_stream_memory_is_constant(model_path):
    """tracemalloc peak over a 2-minute stream equals that over 30 s: no state grows with the stream."""
    model = load_model(model_path)
    block = SAMPLE_RATE // 10
    signal = np.random.default_rng(0).standard_normal((4, block)).astype(np.float32)

    def peak(seconds: int) -> int:
        tracemalloc.start()
        streamer = StreamingSeld(model.metadata, model)
        frames = 0
        for i in range(seconds * 10):
            frames += len(streamer.push(signal * (1.0 + (i % 50) / 10)))
        frames += len(streamer.finish())
        assert frames == seconds * 10
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    peak(30)  # first-use allocations (caches of the filterbank, window, FFT plans) stay out of the measurement
    short, long = peak(30), peak(120)
    print(f"tracemalloc peak: {short} bytes over 30 s, {long} bytes over 120 s")
    assert abs(long - short) <= 0.02 * short, (short, long)


def test_latency_percentiles_are_within_a_bin_of_the_exact_ones():
    stats = LatencyStats()
    seconds = np.random.default_rng(0).lognormal(np.log(2e-3), 0.5, 5000)
    for value in seconds:
        stats.record(float(value))
    summary = stats.summary()
    assert summary["count"] == 5000
    assert summary["mean_ms"] == pytest.approx(seconds.mean() * 1e3, rel=1e-9)
    assert summary["max_ms"] == pytest.approx(seconds.max() * 1e3)
    for q in (50, 95):
        assert summary[f"p{q}_ms"] == pytest.approx(np.percentile(seconds, q) * 1e3, rel=0.01)


# --------------------------------------------------------------------------------------------------
# torch-free guarantee

TORCH_FREE = BLOCK_TORCH + textwrap.dedent(
    """
    import sys
    from click.testing import CliRunner
    from seld_edge.cli import main

    model, audio, out = sys.argv[1:]
    for extra in ([], ["--stream"]):
        result = CliRunner().invoke(main, ["run", model, audio, "-o", out + "/" + str(len(extra)), *extra])
        assert result.exit_code == 0, result.output
    assert "torch" not in {m.split(".")[0] for m, v in sys.modules.items() if v is not None}
    print("torch-free ok")
    """
)


def test_runtime_runs_without_torch_and_writes_the_same_bytes(main, cli, model_path, tmp_path):
    write_audio(tmp_path / "clip.wav", scene_clip(), SAMPLE_RATE)
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(model_path), str(tmp_path / "clip.wav"), str(tmp_path / "free")],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[1],
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch-free ok" in proc.stdout
    for extra in ([], ["--stream"]):
        out = tmp_path / "here" / str(len(extra))
        result = cli.invoke(main, ["run", str(model_path), str(tmp_path / "clip.wav"), "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        assert (out / "clip.csv").read_bytes() == (tmp_path / "free" / str(len(extra)) / "clip.csv").read_bytes()


# --------------------------------------------------------------------------------------------------
# user errors: one line, exit 2, no CSV


def _bad_case(tmp_path: Path, model_path: Path, case: str) -> tuple[Path, Path, Path, str]:
    """(model, audio, out dir, expected message) for one kind of bad input."""
    good = tmp_path / "in/good.wav"
    good.parent.mkdir()
    write_audio(good, plane_wave_foa(1.0, 0.0, 0.0), SAMPLE_RATE)
    out = tmp_path / "out"
    if case == "not onnx":
        (tmp_path / "fake.onnx").write_text("not a model")
        return tmp_path / "fake.onnx", good, out, "fake.onnx: not a loadable ONNX model"
    if case == "no metadata":
        return build_model(tmp_path / "plain.onnx", None), good, out, "plain.onnx: no seld-edge metadata"
    if case == "channels":
        write_audio(tmp_path / "in/stereo.wav", plane_wave_foa(1.0, 0.0, 0.0)[:2], SAMPLE_RATE)
        return model_path, tmp_path / "in", out, "stereo.wav: 2 channels, expected 4"
    if case == "sample rate":
        write_audio(tmp_path / "in/fast.wav", plane_wave_foa(1.0, 0.0, 0.0), 48000)
        return model_path, tmp_path / "in", out, "fast.wav: sample rate 48000 Hz, expected 24000 Hz"
    if case == "empty dir":
        (tmp_path / "empty").mkdir()
        return model_path, tmp_path / "empty", out, "empty: no audio files"
    if case == "ogg":
        sf.write(tmp_path / "clip.ogg", plane_wave_foa(1.0, 0.0, 0.0).T, SAMPLE_RATE, format="OGG")
        return model_path, tmp_path / "clip.ogg", out, "clip.ogg: not a .wav or .flac file"
    meta = metadata(feature_config("foa_logmel_iv"))
    if case == "nan weight":
        return build_model(tmp_path / "nan.onnx", meta, nan=True), good, out, "weight 'w_level' holds NaN or infinite"
    if case == "other pooling":
        model = build_model(tmp_path / "pool.onnx", meta, pool=1)
        return model, good, out, "do not fit its metadata (pool_test gave output 'accdoa' of shape (1, 250, 117)"
    if case == "other classes":
        model = build_model(tmp_path / "classes.onnx", meta, classes=12)
        return model, good, out, "outputs do not fit its metadata (multi-ACCDOA output has shape"
    assert case == "unwritable out"
    (tmp_path / "file").write_text("")
    return model_path, good, tmp_path / "file/out", "file/out: cannot write"


CASES = ["not onnx", "no metadata", "channels", "sample rate", "empty dir", "unwritable out", "ogg", "nan weight",
         "other pooling", "other classes"]  # fmt: skip


@pytest.mark.parametrize("stream_flag", [[], ["--stream"]])
@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(main, cli, model_path, tmp_path, case, stream_flag):
    model, audio, out, message = _bad_case(tmp_path, model_path, case)
    result = cli.invoke(main, ["run", str(model), str(audio), "-o", str(out), *stream_flag])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not list(tmp_path.rglob("*.csv")) and not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--stream", "--lookahead-ms", "5000"], "look-ahead of 50 label frames must be 0 or more and less than"),
        (["--provider", "cuda"], "this onnxruntime has no CUDAExecutionProvider"),
    ],
)
def test_bad_options_are_one_line_exit_2(main, cli, model_path, tmp_path, options, message):
    if "--provider" in options and CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    write_audio(tmp_path / "clip.wav", scene_clip(), SAMPLE_RATE)
    result = cli.invoke(
        main, ["run", str(model_path), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "out"), *options]
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and message in result.output
    assert not list(tmp_path.rglob("*.csv"))


def test_a_fixed_time_axis_runs_offline_and_is_refused_by_streaming(main, cli, tmp_path):
    meta = metadata(feature_config("foa_logmel_iv"))
    fixed = build_model(tmp_path / "fixed.onnx", meta, frames=meta.window_frames(meta.inputs[0]))
    write_audio(tmp_path / "clip.wav", scene_clip(), SAMPLE_RATE)
    offline = cli.invoke(main, ["run", str(fixed), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "out")])
    assert offline.exit_code == 0, offline.output
    assert [e.frame for e in read_events(tmp_path / "out/clip.csv") if e.class_index == 0] == list(range(10, 30))
    streamed = cli.invoke(main, ["run", str(fixed), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "s"), "--stream"])
    assert streamed.exit_code == 2 and len(streamed.output.strip().splitlines()) == 1
    assert "fixed at 250 frames; streaming needs a dynamic one" in streamed.output
    other = build_model(tmp_path / "other.onnx", meta, frames=100)
    result = cli.invoke(main, ["run", str(other), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "fixes input 'features' at 100 frames, but its window is 250" in result.output


def test_a_time_axis_dynamic_in_name_only_is_one_line_in_a_stream(main, cli, tmp_path):
    """A graph that declares a dynamic time axis but reshapes to the window's 50 label frames runs offline
    (whole windows) and failed a stream's first, shorter window with an ONNX Runtime traceback."""
    meta = metadata(feature_config("foa_logmel_iv"))
    model = build_model(tmp_path / "traced.onnx", meta, reshape_labels=meta.window_labels)
    write_audio(tmp_path / "clip.wav", scene_clip(), SAMPLE_RATE)
    offline = cli.invoke(main, ["run", str(model), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "out")])
    assert offline.exit_code == 0, offline.output
    streamed = cli.invoke(main, ["run", str(model), str(tmp_path / "clip.wav"), "-o", str(tmp_path / "s"), "--stream"])
    assert streamed.exit_code == 2 and len(streamed.output.strip().splitlines()) == 1, streamed.output
    assert f"{model}: the graph does not run on features of shape (1, 7, 5, 64) (" in streamed.output
    assert "Reshape" in streamed.output and not (tmp_path / "s").exists()


def test_execution_providers_are_chosen_and_checked(model_path):
    assert execution_providers("cpu", [CPU]) == [CPU]
    assert execution_providers("auto", [CPU]) == [CPU]
    assert execution_providers("auto", [TENSORRT, CUDA, CPU]) == [TENSORRT, CUDA, CPU]
    assert execution_providers("tensorrt", [TENSORRT, CUDA, CPU]) == [TENSORRT, CUDA, CPU]
    assert execution_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    with pytest.raises(SeldEdgeError, match="this onnxruntime has no CUDAExecutionProvider"):
        execution_providers("cuda", [CPU])
    model = load_model(model_path, threads=1)
    assert model.providers == [CPU]
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_weights_read_without_onnx_equal_onnx_s_own(tmp_path):
    """runtime.onnx_weights reads every floating-point tensor as the onnx package does: initialisers in raw
    bytes or in typed fields (float, double, float16, bfloat16), Constant nodes, and the subgraphs of If."""
    from onnx import TensorProto, helper, numpy_helper

    from runtime.onnx_weights import first_non_finite, float_weights

    rng = np.random.default_rng(0)
    values = rng.standard_normal(6).astype(np.float32)
    initializers = [
        numpy_helper.from_array(values, "raw32"),
        helper.make_tensor("typed32", TensorProto.FLOAT, [6], values.tolist()),
        helper.make_tensor("typed64", TensorProto.DOUBLE, [6], values.astype(np.float64).tolist()),
        helper.make_tensor("typed16", TensorProto.FLOAT16, [6], values.astype(np.float16).tolist()),
        helper.make_tensor("bf16", TensorProto.BFLOAT16, [2], [1.5, -2.0]),
        numpy_helper.from_array(np.arange(3, dtype=np.int64), "ints"),
    ]

    def branch(name: str, value: float) -> onnx.GraphProto:
        constant = helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.float32([value]), name))
        return helper.make_graph([constant], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1])])

    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(values[:2], "c")),
        helper.make_node("Cast", ["raw32"], ["flag"], to=TensorProto.BOOL),
        helper.make_node("ReduceMax", ["flag"], ["cond"], keepdims=0),
        helper.make_node("If", ["cond"], ["y"], then_branch=branch("then", 1.0), else_branch=branch("else", np.nan)),
    ]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph(nodes, "g", [], [output], initializers)
    path = tmp_path / "weights.onnx"
    onnx.save(helper.make_model(graph), path)

    found = dict(float_weights(path))
    assert sorted(found) == sorted(["raw32", "typed32", "typed64", "typed16", "bf16", "c", "then", "else"])
    for tensor in initializers[:5]:
        np.testing.assert_array_equal(found[tensor.name], numpy_helper.to_array(tensor).ravel())
    np.testing.assert_array_equal(found["bf16"], [1.5, -2.0])
    np.testing.assert_array_equal(found["c"], values[:2])
    assert first_non_finite(path) == "else", "a NaN in a subgraph's Constant is found"
    shipped = dict(float_weights(Path(__file__).parents[1] / "seld_edge/assets/seldnet_synth.onnx"))
    reference = onnx.load(Path(__file__).parents[1] / "seld_edge/assets/seldnet_synth.onnx").graph.initializer
    floats = [t for t in reference if t.data_type == TensorProto.FLOAT]
    assert len(shipped) >= len(floats) > 10
    for tensor in floats:
        np.testing.assert_array_equal(shipped[tensor.name], numpy_helper.to_array(tensor).ravel())
