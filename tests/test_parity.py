"""seld-edge parity: PyTorch against the runtime, with the bounds CI holds every exported model to.

Bounds (issue: ONNX export, runtime, parity): FP32 ONNX vs PyTorch max abs error <= 1e-4 on the
model outputs, |delta SELD| <= 0.001 end to end.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.parity import error_stats  # noqa: E402
from seld_edge.cli import main  # noqa: E402
from seld_edge.synth import generate_dataset  # noqa: E402
from tests.test_export import make_checkpoint  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "seld_edge" / "assets"


def test_error_stats_by_hand():
    stats = error_stats(np.array([1.0, -2.0, 0.0, 4.0]), np.array([1.0, -2.5, 1e-7, 4.0]))
    assert stats["max_abs_error"] == pytest.approx(0.5)
    assert stats["mean_abs_error"] == pytest.approx((0.5 + 1e-7) / 4)
    assert stats["max_rel_error"] == pytest.approx(0.25)  # 0.5 / 2; the zero uses the 1e-6 floor: 0.1


def test_shipped_model_end_to_end_on_generated_data(tmp_path, cli):
    data = tmp_path / "data"
    generate_dataset(data, n_train=0, n_test=2, seconds=20.0, seed=11, progress=False)
    args = [str(ASSETS / "seldnet_synth"), str(ASSETS / "seldnet_synth.onnx"), "--data", str(data)]
    result = cli.invoke(main, ["parity", *args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    seld = report["scores_runtime"]["SELD"]
    print(f"shipped seldnet: max abs {report['max_abs_error']:.2e}, |delta SELD| {report['delta_seld']:.2e}, "
          f"{report['differing_detections']} differing detections, SELD {seld:.3f}")  # fmt: skip
    assert report["max_abs_error"] <= 1e-4
    assert report["delta_seld"] <= 0.001
    assert report["scores_runtime"]["F"] > 0.2, "the shipped model detects events on unseen generated scenes"
    text = cli.invoke(main, ["parity", *args])
    assert text.exit_code == 0 and "end to end (dcase2023): |delta SELD|" in text.output


def test_a_model_from_another_checkpoint_is_refused(tmp_path, cli):
    make_checkpoint(tmp_path / "best", "seldnet")
    result = cli.invoke(main, ["parity", str(tmp_path), str(ASSETS / "seldnet_synth.onnx")])
    assert result.exit_code == 2 and "was not exported from" in result.output
    shutil.copy(ASSETS / "seldnet_synth.onnx", tmp_path / "m.onnx")
    (tmp_path / "m.onnx").write_bytes(b"not onnx")
    result = cli.invoke(main, ["parity", str(ASSETS / "seldnet_synth"), str(tmp_path / "m.onnx")])
    assert result.exit_code == 2 and "not a loadable ONNX model" in result.output


def test_a_clip_too_loud_for_its_features_is_named(tmp_path, cli):
    """Samples at 3e38 overflow float32 power spectra: parity --data said so without naming the file."""
    import soundfile as sf

    from tests.faults import one_line_error

    generate_dataset(tmp_path / "data", n_train=0, n_test=1, seconds=2.0, seed=1, progress=False)
    (wav,) = (tmp_path / "data" / "foa_dev").rglob("*.wav")
    audio, rate = sf.read(wav, dtype="float32")
    audio[1000:1010] = 3e38
    sf.write(wav, audio, rate, subtype="FLOAT")
    result = cli.invoke(main, ["parity", str(ASSETS / "seldnet_synth"), str(ASSETS / "seldnet_synth.onnx"),
                               "--data", str(tmp_path / "data")])  # fmt: skip
    assert result.exit_code == 2
    one_line_error(result.output, f"{wav}: its features are not finite: the samples reach 3e+38")


def test_predict_and_run_write_the_same_events(tmp_path, cli):
    from seld_edge.formats import read_events

    data = tmp_path / "data"
    generate_dataset(data, n_train=0, n_test=1, seconds=15.0, seed=12, progress=False)
    audio = data / "foa_dev"
    assert (
        cli.invoke(main, ["predict", str(ASSETS / "seldnet_synth"), str(audio), "-o", str(tmp_path / "pt")]).exit_code
        == 0
    )
    assert (
        cli.invoke(main, ["run", str(ASSETS / "seldnet_synth.onnx"), str(audio), "-o", str(tmp_path / "rt")]).exit_code
        == 0
    )
    torch_csv, runtime_csv = (next((tmp_path / d).glob("*.csv")) for d in ("pt", "rt"))
    torch_events, runtime_events = read_events(torch_csv), read_events(runtime_csv)
    assert torch_events, "the shipped model detects something in a generated scene"
    assert [(e.frame, e.class_index, e.source) for e in torch_events] == [
        (e.frame, e.class_index, e.source) for e in runtime_events
    ]
    for a, b in zip(torch_events, runtime_events, strict=True):
        assert abs(a.azimuth - b.azimuth) < 0.1 and abs(a.elevation - b.elevation) < 0.1


def _edited_model(tmp_path: Path, field: str, edit) -> Path:
    """The shipped model with one metadata field edited (what a hand edit of the ONNX file does)."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(ASSETS / "seldnet_synth.onnx")
    for prop in model.metadata_props:
        if prop.key == f"seld_edge.{field}":
            prop.value = edit(prop.value)
    path = tmp_path / f"{field}.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize(
    ("field", "edit", "named"),
    [
        # The case. The graph pools 5 feature frames per label frame, so since this change the model
        # file is refused on loading (by run too); before, parity ran both sides on this metadata and passed.
        ("inputs", lambda v: v.replace('"hop_length": 480', '"hop_length": 240'),
         "the graph's outputs do not fit its metadata"),
        ("inputs", lambda v: v.replace('"top_db": 80.0', '"top_db": 60.0'),
         "its metadata differ from its checkpoint's where outputs depend on them: "
         "inputs[features].top_db 60.0 here, 80.0 in the checkpoint"),
        ("postprocess", lambda v: v.replace('"median_size": 1', '"median_size": 5'), "postprocess"),
        ("window_labels", lambda v: "100", "window_labels 100 here, 50 in the checkpoint"),
    ],
)  # fmt: skip
def test_a_model_whose_metadata_differ_from_its_checkpoint_is_refused(tmp_path, cli, field, edit, named):
    """The issue: hop_length 480 -> 240 in the model file made `run` score SELD 0.689 where predict scores
    0.386, while parity, running both sides with the model file's metadata, reported no difference."""
    data = tmp_path / "data"
    generate_dataset(data, n_train=0, n_test=1, seconds=6.0, seed=11, progress=False)
    model = _edited_model(tmp_path, field, edit)
    result = cli.invoke(main, ["parity", str(ASSETS / "seldnet_synth"), str(model), "--data", str(data)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith(f"error: {model}: ")
    assert named in result.output


def test_each_side_runs_with_its_own_metadata(tmp_path):
    """compare() given a checkpoint view that differs from the model file's (a median filter) finds events that
    differ end to end, where both sides on one metadata block agree."""
    from dataclasses import replace

    from export.parity import compare, data_clips
    from runtime.model import load_model
    from training.checkpoint import checkpoint_metadata, load_checkpoint, resolve_checkpoint

    data = tmp_path / "data"
    generate_dataset(data, n_train=0, n_test=1, seconds=10.0, seed=12, progress=False)
    system, info = load_checkpoint(ASSETS / "seldnet_synth")
    torch_meta = checkpoint_metadata(resolve_checkpoint(ASSETS / "seldnet_synth"), system, info)
    runtime = load_model(ASSETS / "seldnet_synth.onnx")
    clips = data_clips(data, runtime.metadata)
    same = compare(system, torch_meta, runtime, clips)
    smoothed = replace(torch_meta, postprocess=replace(torch_meta.postprocess, median_size=9))
    other = compare(system, smoothed, runtime, clips)
    print(f"differing detections: {same['differing_detections']} with one metadata block, "
          f"{other['differing_detections']} with a median of 9 on the PyTorch side")  # fmt: skip
    assert same["differing_detections"] == 0 and other["differing_detections"] > 0
    assert other["max_abs_error"] == same["max_abs_error"], "the network outputs are compared on the same windows"
