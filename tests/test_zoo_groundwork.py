"""What the zoo's papers need beyond SELDnet, shown with the toy models of tests/toy_models.py (which
touch no file but their own): label rates of 5 and 20 Hz, distance ACCDOA on stereo, loss schedules,
composite models on two recordings, training stages (init_from, freeze, patience), and the layering of
the package."""

import ast
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from seld_edge.cli import main as cli_main  # noqa: E402
from seld_edge.errors import SeldEdgeError  # noqa: E402
from seld_edge.formats import Event, get_output_format, read_events  # noqa: E402
from seld_edge.formats.label_rate import events_at_rate, grid_frames, outputs_on_grid, rate_ratio  # noqa: E402
from seld_edge.models import ModelCard, register_model  # noqa: E402
from seld_edge.postprocess import PostProcessing  # noqa: E402
from seld_edge.synth import generate_dataset  # noqa: E402
from training.fit import main as fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--device", "cpu", "batch_size=4", "eval_hop_seconds=2"]


pytestmark = pytest.mark.usefixtures("toys")  # the toy models of tests/toy_models.py (conftest.py)


@pytest.fixture(scope="module")
def foa_mic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("foa_mic")
    generate_dataset(root, fmt="foa,mic", n_train=2, n_test=1, seconds=7.3, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def stereo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stereo")
    generate_dataset(root, fmt="stereo", n_train=2, n_test=1, seconds=6.0, seed=4, progress=False)
    return root


def assert_same_events(a: Path, b: Path) -> None:
    """Two CSVs hold the same detections, directions within 0.1 degree (ONNX Runtime and PyTorch round
    differently in the last digits the CSV writes)."""
    first, second = read_events(a), read_events(b)
    assert [(e.frame, e.class_index, e.source) for e in first] == [(e.frame, e.class_index, e.source) for e in second]
    for x, y in zip(first, second, strict=True):
        assert abs(x.azimuth - y.azimuth) < 0.1 and abs(x.elevation - y.elevation) < 0.1


def train(model: str, data: Path, out: Path, *extra: str) -> dict:
    return fit(["--model", model, "--data", str(data), "--out", str(out), *FAST, *extra])


# --------------------------------------------------------------------------------------------------
# label rates


def test_rate_ratios_and_frame_counts():
    assert rate_ratio(10.0) == (1, 1) and rate_ratio(5.0) == (2, 1) and rate_ratio(20.0) == (1, 2)
    assert rate_ratio(2.5) == (4, 1)
    for bad in (3.0, 0.0, -5.0, float("nan")):
        with pytest.raises(SeldEdgeError, match="label rate"):
            rate_ratio(bad)
    # 7.3 s: 37 frames at 5 Hz give 74 grid frames (the last reaches 100 ms past the clip), 146 at 20 Hz give 73
    assert grid_frames(37, 5.0) == 74 and grid_frames(146, 20.0) == 73 and grid_frames(145, 20.0) == 73


def test_events_move_to_the_model_rate_and_outputs_back_to_the_grid():
    events = [Event(0, 1, 0, 10.0, 0.0), Event(1, 1, 0, 20.0, 0.0), Event(1, 2, 0, 30.0, 0.0), Event(5, 0, 0, 0.0, 0.0)]
    slow = events_at_rate(events, 5.0)
    # frames 0-1 make model frame 0: class 1 once (frame 0's direction), class 2; frame 5 is model frame 2
    assert sorted((e.frame, e.class_index, e.azimuth) for e in slow) == [(0, 1, 10.0), (0, 2, 30.0), (2, 0, 0.0)]
    fast = events_at_rate(events, 20.0)
    assert sorted({e.frame for e in fast}) == [0, 1, 2, 3, 10, 11]  # each grid frame on two model frames
    outputs = {"sed": np.arange(5, dtype=np.float32)[:, None]}
    np.testing.assert_array_equal(outputs_on_grid(outputs, 5.0)["sed"][:, 0], [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    # 5 frames at 20 Hz: (0 + 1) / 2, (2 + 3) / 2, then the partial last group alone
    np.testing.assert_array_equal(outputs_on_grid(outputs, 20.0)["sed"][:, 0], [0.5, 2.5, 4.0])


@pytest.mark.parametrize("rate", [5.0, 20.0])
def test_a_perfect_output_at_another_rate_decodes_to_the_grid_events(rate):
    """Events that hold still over each 200 ms pair, encoded at the model's rate, come back on the grid."""
    fmt = get_output_format("sed_doa")
    grid = [Event(f, 3, 0, 40.0, 10.0) for f in range(2, 8)] + [Event(f, 5, 0, -100.0, 0.0) for f in (8, 9)]
    up, down = rate_ratio(rate)
    n_model = 12 // up * down
    outputs = fmt.encode(events_at_rate(grid, rate), n_model, 13)
    decoded = fmt.decode(outputs_on_grid(outputs, rate), 13, PostProcessing())
    assert [(e.frame, e.class_index) for e in decoded] == [(e.frame, e.class_index) for e in grid]
    assert all(abs(d.azimuth - e.azimuth) < 1e-4 for d, e in zip(decoded, grid, strict=True))


def test_a_5_hz_model_trains_exports_and_runs_on_the_100_ms_grid(foa_mic, tmp_path, cli):
    """GLFER-Net's case: a 5 Hz model on a 7.3 s clip (not a whole number of 200 ms frames)."""
    run = tmp_path / "run"
    result = train("toy_sed_doa_5hz", foa_mic, run, "--epochs", "1", "chunk_seconds=4")
    assert result["epochs"] == 1
    meta = json.loads((run / "best.json").read_text())
    assert meta["label_rate_hz"] == 5.0 and meta["train_config"]["loss"]["masked_mse"]["normaliser"] == "all"
    model = tmp_path / "m.onnx"
    assert cli.invoke(cli_main, ["export", str(run), "-o", str(model), "--strict"]).exit_code == 0
    audio = foa_mic / "foa_dev"
    for command, source, out in (("run", model, "rt"), ("predict", run, "pt")):
        done = cli.invoke(cli_main, [command, str(source), str(audio), "-o", str(tmp_path / out)])
        assert done.exit_code == 0, done.output
    written = sorted((tmp_path / "rt").glob("*.csv"))
    assert len(written) == 3 and [p.name for p in written] == sorted(p.name for p in (tmp_path / "pt").glob("*.csv"))
    for runtime_csv in written:
        assert_same_events(runtime_csv, tmp_path / "pt" / runtime_csv.name)
        frames = [e.frame for e in read_events(runtime_csv)]
        assert not frames or max(frames) < 74, "frames on the 100 ms grid of a 7.3 s clip (37 model frames)"
    report = cli.invoke(cli_main, ["parity", str(run), str(model), "--data", str(foa_mic), "--json"])
    assert report.exit_code == 0, report.output
    parsed = json.loads(report.stdout)
    print(f"toy 5 Hz parity: max abs {parsed['max_abs_error']:.2e}, |delta SELD| {parsed['delta_seld']:.2e}")
    assert parsed["max_abs_error"] <= 1e-4 and parsed["delta_seld"] <= 1e-3


def test_a_20_hz_model_trains_and_streams_like_it_runs_offline(foa_mic, tmp_path, cli):
    from runtime.model import load_model
    from runtime.pipeline import clip_events
    from runtime.stream import StreamingSeld
    from seld_edge.audio import read_audio
    from seld_edge.features import compute_features

    run = tmp_path / "run"
    train("toy_accdoa_20hz", foa_mic, run, "--epochs", "1", "postprocess.thresholds=0.05")
    model_path = tmp_path / "m.onnx"
    assert cli.invoke(cli_main, ["export", str(run), "-o", str(model_path)]).exit_code == 0
    model = load_model(model_path)
    audio = read_audio(next((foa_mic / "foa_dev").rglob("*.wav")))
    offline = clip_events(model, {"features": compute_features(audio, model.metadata.feature_config)})
    stream = StreamingSeld(model.metadata, model)
    frames = [f for i in range(0, audio.shape[1], 2400) for f in stream.push(audio[:, i : i + 2400])]
    frames += stream.finish()
    assert [f.index for f in frames] == list(range(73)), "a 7.3 s clip is 73 grid frames, streamed or not"
    streamed = {(e.frame, e.class_index) for f in frames for e in f.events}
    assert offline, "the low threshold makes the untrained toy detect something"
    # Streaming sees one window per frame where offline averages overlapping windows: most frames agree.
    agree = len(streamed & {(e.frame, e.class_index) for e in offline})
    assert agree >= 0.5 * len(offline)


# --------------------------------------------------------------------------------------------------
# stereo with distance


def test_a_stereo_distance_model_trains_and_writes_the_2025_form(stereo, tmp_path, cli):
    run = tmp_path / "run"
    result = train("toy_stereo", stereo, run, "--epochs", "2", "metric=dcase2025", "tune_thresholds=true",
                   "postprocess.thresholds=0.1")  # fmt: skip
    assert result["epochs"] == 2
    meta = json.loads((run / "best.json").read_text())
    assert set(meta["scores"]) == {"F", "AE", "DE", "RDE"} and len(meta["postprocess"]["thresholds"]) == 13
    out = tmp_path / "pred"
    assert (
        cli.invoke(cli_main, ["predict", str(run), str(stereo / "stereo_dev"), "-o", str(out), "--tta"]).exit_code == 0
    )
    text = next(out.glob("*.csv")).read_text()
    assert text.splitlines()[0] == "frame,class,source,azimuth,distance,onscreen"
    for event in read_events(next(out.glob("*.csv"))):
        assert -90.0 <= event.azimuth <= 90.0 and event.distance is not None
    done = cli.invoke(cli_main, ["eval", "--ref", str(stereo / "metadata_dev"), "--pred", str(out),
                                 "--metric", "dcase2025", "--json"])  # fmt: skip
    assert done.exit_code == 0 and set(json.loads(done.stdout)) == {"F", "AE", "DE", "RDE"}


# --------------------------------------------------------------------------------------------------
# loss schedule and composite models


def printed(capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_a_two_network_model_is_trained_composed_exported_and_run_on_two_recordings(foa_mic, tmp_path, cli, capsys):
    sed, doa = tmp_path / "sed", tmp_path / "doa"
    train("toy_sed", foa_mic, sed, "--epochs", "2")
    text = printed(capsys)
    assert "loss from epoch 1: 1 bce" in text and "loss from epoch 2: 1 soft_f" in text, "the loss switches halfway"
    train("toy_doa", foa_mic, doa, "--epochs", "2")
    assert "loss from epoch 2: 1 masked_mse" in printed(capsys)
    meta = json.loads((sed / "best.json").read_text())
    assert set(meta["scores"]) == {"ER", "F", "LE", "LR", "SELD"}, "a SED network is scored with reference directions"

    done = cli.invoke(cli_main, ["export", str(sed), "-o", str(tmp_path / "sed.onnx")])
    assert done.exit_code == 2 and "compose it with its other part" in done.output
    composite = tmp_path / "composite"
    done = cli.invoke(cli_main, ["compose", "toy_sed_doa", f"sed={sed}", f"doa={doa}", "-o", str(composite)])
    assert done.exit_code == 0, done.output
    model = tmp_path / "m.onnx"
    done = cli.invoke(cli_main, ["export", str(composite), "-o", str(model), "--strict"])
    assert done.exit_code == 0, done.output
    import onnx

    assert [i.name for i in onnx.load(model).graph.input] == ["features_sed", "features_doa"]

    for command, source, out in (("run", model, "rt"), ("predict", composite, "pt")):
        done = cli.invoke(cli_main, [command, str(source), str(foa_mic), "-o", str(tmp_path / out)])
        assert done.exit_code == 0, done.output
    names = sorted(p.name for p in (tmp_path / "rt").glob("*.csv"))
    assert names == sorted(p.name for p in (tmp_path / "pt").glob("*.csv")) and len(names) == 3
    for name in names:
        assert_same_events(tmp_path / "rt" / name, tmp_path / "pt" / name)
    one = next((foa_mic / "foa_dev" / "dev-test-synth").glob("*.wav"))
    done = cli.invoke(cli_main, ["run", str(model), str(one), "-o", str(tmp_path / "one")])
    assert done.exit_code == 0 and (tmp_path / "one" / f"{one.stem}.csv").is_file(), done.output
    tta = cli.invoke(cli_main, ["predict", str(composite), str(one), "-o", str(tmp_path / "tta"), "--tta"])
    assert tta.exit_code == 0, tta.output

    report = cli.invoke(cli_main, ["parity", str(composite), str(model), "--data", str(foa_mic), "--json"])
    assert report.exit_code == 0, report.output
    parsed = json.loads(report.stdout)
    print(f"toy composite parity: max abs {parsed['max_abs_error']:.2e}, |delta SELD| {parsed['delta_seld']:.2e}")
    assert parsed["max_abs_error"] <= 1e-4 and parsed["delta_seld"] <= 1e-3

    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / one.name).write_bytes(one.read_bytes())
    done = cli.invoke(cli_main, ["run", str(model), str(flat / one.name), "-o", str(tmp_path / "x")])
    assert done.exit_code == 2 and "reads mic and foa recordings" in done.output, done.output
    mic = foa_mic / "mic_dev" / "dev-test-synth" / one.name
    hidden = mic.with_suffix(".moved")
    mic.rename(hidden)
    try:
        done = cli.invoke(cli_main, ["run", str(model), str(foa_mic), "-o", str(tmp_path / "y")])
        assert done.exit_code == 2 and f"no mic recording of this clip ({mic.with_suffix('')}.wav)" in done.output
        assert not (tmp_path / "y").exists() or not list((tmp_path / "y").iterdir())
    finally:
        hidden.rename(mic)


def test_compose_refuses_parts_that_do_not_fit(foa_mic, tmp_path, cli):
    sed = tmp_path / "sed"
    train("toy_sed", foa_mic, sed, "--epochs", "1")
    for args, message in (
        (["toy_sed_doa", f"sed={sed}"], "composed as `sed=CHECKPOINT doa=CHECKPOINT`"),
        (["toy_sed_doa", f"sed={sed}", f"doa={sed}"], "the doa part of toy_sed_doa must be a toy_doa, not toy_sed"),
        (["toy_sed", f"sed={sed}"], "toy_sed is not a composite"),
    ):
        done = cli.invoke(cli_main, ["compose", *args, "-o", str(tmp_path / "c")])
        assert done.exit_code == 2 and message in done.output, done.output
    with pytest.raises(SystemExit):
        train("toy_sed_doa", foa_mic, tmp_path / "x", "--epochs", "1")


# --------------------------------------------------------------------------------------------------
# training stages


def test_init_from_freeze_and_patience(foa_mic, tmp_path, capsys):
    first = tmp_path / "first"
    train("toy_doa", foa_mic, first, "--epochs", "1")
    frozen = tmp_path / "frozen"
    train("toy_doa", foa_mic, frozen, "--epochs", "1", f"init_from={first}", "freeze=[hidden]")
    assert f"initialised from {first / 'best'}" in printed(capsys)
    from safetensors.torch import load_file

    before, after = load_file(first / "best.safetensors"), load_file(frozen / "best.safetensors")
    assert torch.equal(before["net.hidden.weight"], after["net.hidden.weight"]), "frozen"
    assert not torch.equal(before["net.heads.0.weight"], after["net.heads.0.weight"]), "trained on"
    torch.testing.assert_close(before["mean"], after["mean"])  # the first stage's normaliser comes along

    with pytest.raises(SystemExit):
        train("toy_doa", foa_mic, tmp_path / "other", "--epochs", "1", f"init_from={first}", "model.hidden=8")
    err = printed(capsys)
    assert "the weights do not fit toy_doa" in err and "net.hidden.weight is (16, 7), the model's (8, 7)" in err
    train("toy_doa", foa_mic, tmp_path / "loose", "--epochs", "1", f"init_from={first}", "model.hidden=8",
          "init_strict=false")  # fmt: skip
    assert "not loaded: net.heads.0.weight is (39, 16), the model's (39, 8)" in printed(capsys)
    # a setting that changes the network but no weight's shape: the weights fit, the network is not theirs
    relu = "model.heads=[[tanh,tanh,relu]]"
    with pytest.raises(SystemExit):
        train("toy_doa", foa_mic, tmp_path / "relu", "--epochs", "1", f"init_from={first}", relu)
    assert (
        f'init_from: {first / "best"} was trained with heads=[["tanh", "tanh", "tanh"]], this run builds '
        'heads=[["tanh", "tanh", "relu"]]; give model.heads=[["tanh", "tanh", "tanh"]] to train the same '
        "network on, or init_strict=false to load its weights anyway"
    ) in printed(capsys)
    train("toy_doa", foa_mic, tmp_path / "relu", "--epochs", "1", f"init_from={first}", relu, "init_strict=false")

    with pytest.raises(SystemExit):
        train("toy_doa", foa_mic, tmp_path / "f", "--epochs", "1", "freeze=[encoder]")
    assert "freeze: no parameters under 'encoder' (modules: heads, hidden)" in printed(capsys)

    # lr so small that validation cannot improve after epoch 1: stops after 1 + patience epochs
    result = train("toy_doa", foa_mic, tmp_path / "patience", "--epochs", "10", "lr=1e-12", "patience=2")
    assert result["epochs"] == 3
    assert "no improvement for 2 epochs (best at epoch 1)" in printed(capsys)


def test_several_data_roots_are_mixed(foa_mic, tmp_path):
    """Stereo-RCnet's stage 1 trains on synthetic and real data together: --data A --data B."""
    from training.config import resolve_config
    from training.fit import Trainer

    other = tmp_path / "other"
    generate_dataset(other, n_train=1, n_test=1, seconds=6.0, seed=9, progress=False)
    config = resolve_config("toy_doa", [str(foa_mic), str(other)], str(tmp_path / "run"))
    trainer = Trainer(config)
    roots = sorted({str(c.clip.audio).split("/foa_dev/")[0] for c in trainer.train_clips})
    assert roots == sorted([str(foa_mic), str(other)]) and len(trainer.train_clips) == 3
    assert len(trainer.val_clips) == 2
    result = train("toy_doa", foa_mic, tmp_path / "cli", "--data", str(other), "--epochs", "1")
    assert result["epochs"] == 1
    assert json.loads((tmp_path / "cli" / "config.json").read_text())["data"] == [str(foa_mic), str(other)]


def test_a_linear_schedule_ends_at_its_end_factor():
    from training.fit import Schedule

    schedule = Schedule("linear", total_steps=100, warmup_steps=0, end_factor=1 / 3)  # FFMamba: 3e-4 -> 1e-4
    assert schedule(0) == 1.0 and schedule(100) == pytest.approx(1 / 3) and schedule(50) == pytest.approx(2 / 3)
    cosine = Schedule("cosine", total_steps=100, warmup_steps=0, end_factor=0.01)
    assert cosine(100) == pytest.approx(0.01)


def test_short_chunks_validate_with_the_hop_capped_at_the_window(foa_mic, tmp_path):
    """chunk_seconds=2 once died at the first validation: the 2.5 s hop was longer than the 2 s window."""
    result = train("toy_doa", foa_mic, tmp_path / "short", "--epochs", "1", "chunk_seconds=2", "eval_hop_seconds=2.5")
    assert result["epochs"] == 1


# --------------------------------------------------------------------------------------------------
# cards and layering


def test_a_card_that_contradicts_itself_fails_at_registration():
    class Net(torch.nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()

    with pytest.raises(SeldEdgeError, match="unknown feature kind 'foa_logmel_ivv'"):
        register_model("bad_kind", ModelCard("foa_logmel_ivv", "sed_doa", defaults={"width": 1, "num_classes": 1}))(Net)
    with pytest.raises(SeldEdgeError, match="unknown output format"):
        register_model("bad_format", ModelCard("foa_logmel_iv", "sed_doaa", defaults={"num_classes": 1}))(Net)
    with pytest.raises(SeldEdgeError, match="does not divide"):
        register_model(
            "bad_rate", ModelCard("foa_logmel_iv", "sed_doa", label_rate_hz=20.0, defaults={"num_classes": 1})
        )(Net)
    with pytest.raises(ValueError, match="'with_distance' is not one of its settings"):
        register_model(
            "bad_arg", ModelCard("foa_logmel_iv", "accdoa", format_args=("with_distance",), defaults={"num_classes": 1})
        )(Net)
    with pytest.raises(ValueError, match="'num_classes' is not one of its settings"):
        register_model("no_classes", ModelCard("foa_logmel_iv", "accdoa", defaults={"width": 1}))(Net)


LAYERS = {"seld_edge": 0, "runtime": 1, "training": 2, "export": 3}


def _imports(path: Path) -> set[str]:
    """Top-level package of every absolute import in a module, lazy (inside functions) ones included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_module_imports_a_higher_layer():
    """seld_edge (core) < runtime < training < export, lazy imports included; the core registers the
    higher layers' commands through entry points, never by importing them."""
    upward = []
    for package, level in LAYERS.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for imported in _imports(path):
                if LAYERS.get(imported, -1) > level:
                    upward.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not upward, upward
    # the check itself sees lazy imports: a function-level import counts
    assert "training" in _imports(ROOT / "export" / "parity.py")
