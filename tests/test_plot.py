"""`seld-edge plot`: valid PNGs of a fixed size, pairing by clip name, user errors as SeldEdgeError."""

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from seld_edge.errors import SeldEdgeError
from seld_edge.formats import STARSS23_CLASSES, Event, write_events
from seld_edge.plot import _runs, plot_clip
from seld_edge.plot_cli import plot_command

try:
    from matplotlib.image import imread
except ImportError:
    imread = None

needs_matplotlib = pytest.mark.skipif(imread is None, reason="matplotlib is not installed (seld-edge[plot])")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PIXELS = (960, 1440)  # 8 x 12 inches at 120 dpi

REFERENCE = [Event(f, 0, 0, 30.0 + f, 10.0, 1.5) for f in range(5, 25)] + [
    Event(f, 7, 0, -90.0, -20.0) for f in range(15)
]
PREDICTION = [Event(f, 0, 0, 35.0 + f, 5.0) for f in range(7, 25)] + [Event(f, 2, 0, 120.0, 0.0) for f in range(3, 9)]


def _write_csv(path, events):
    """A prediction-style CSV (Cartesian, metres); references use the same form in these tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_events(path, events)
    return path


def _invoke(*args):
    return CliRunner().invoke(plot_command, [str(a) for a in args])


@needs_matplotlib
@pytest.mark.parametrize(
    ("reference", "prediction"), [(REFERENCE, PREDICTION), (REFERENCE, []), ([], [])], ids=["both", "ref", "empty"]
)
def test_plot_clip_writes_a_png_of_the_figure_size(tmp_path, reference, prediction):
    out = tmp_path / "clip.png"
    plot_clip(reference, prediction, out, "clip", STARSS23_CLASSES)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(out).shape[:2] == PIXELS
    assert [p.name for p in tmp_path.iterdir()] == ["clip.png"]  # no temporary file left beside it


@needs_matplotlib
def test_the_prediction_is_drawn(tmp_path):
    plot_clip(REFERENCE, PREDICTION, tmp_path / "both.png", "clip", STARSS23_CLASSES)
    plot_clip(REFERENCE, [], tmp_path / "ref.png", "clip", STARSS23_CLASSES)
    assert (imread(tmp_path / "both.png") != imread(tmp_path / "ref.png")).any()


@needs_matplotlib
def test_folder_input_writes_one_png_per_paired_clip(tmp_path):
    for name in ("a", "b"):
        _write_csv(tmp_path / "ref" / "dev-test" / f"{name}.csv", REFERENCE)
        _write_csv(tmp_path / "pred" / f"{name}.csv", PREDICTION)
    _write_csv(tmp_path / "pred" / "orphan.csv", PREDICTION)  # no reference: not plotted
    result = _invoke("--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert all(imread(p).shape[:2] == PIXELS for p in (tmp_path / "out").iterdir())


@needs_matplotlib
def test_missing_prediction_plots_the_reference_alone(tmp_path, monkeypatch):
    import seld_edge.plot

    calls = []
    monkeypatch.setattr(
        seld_edge.plot, "plot_clip", lambda ref, pred, out, title, names, **kw: calls.append((pred, kw))
    )
    for name in ("a", "b"):
        _write_csv(tmp_path / "ref" / f"{name}.csv", REFERENCE)
    _write_csv(tmp_path / "pred" / "a.csv", PREDICTION)
    result = _invoke("--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "-o", tmp_path / "out", "--clip", "b")
    assert result.exit_code == 0, result.output
    assert calls == [(None, {"stereo": False, "duration_s": None, "scores": None})]  # None: no prediction file
    monkeypatch.undo()
    result = _invoke("--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "-o", tmp_path / "b.png", "--clip", "b")
    assert result.exit_code == 0, result.output
    assert imread(tmp_path / "b.png").shape[:2] == PIXELS


@needs_matplotlib
def test_two_files_pair_whatever_their_names(tmp_path):
    ref = _write_csv(tmp_path / "fold4_room23_mix001.csv", REFERENCE)
    pred = _write_csv(tmp_path / "model_output.csv", PREDICTION)
    result = _invoke("--ref", ref, "--pred", pred, "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["fold4_room23_mix001.png"]


def test_several_clips_into_one_png_is_refused(tmp_path):
    for name in ("a", "b"):
        _write_csv(tmp_path / "ref" / f"{name}.csv", REFERENCE)
    result = _invoke("--ref", tmp_path / "ref", "--pred", tmp_path / "ref", "-o", tmp_path / "all.png")
    assert isinstance(result.exception, SeldEdgeError) and "give a folder or --clip" in str(result.exception)


@pytest.mark.parametrize("problem", ["no such reference", "no such prediction", "malformed", "unknown clip"])
def test_bad_input_is_a_user_error_and_writes_nothing(tmp_path, problem):
    ref = _write_csv(tmp_path / "ref" / "a.csv", REFERENCE)
    pred = _write_csv(tmp_path / "pred" / "a.csv", PREDICTION)
    args = ["--ref", ref, "--pred", pred, "-o", tmp_path / "out"]
    expected = {
        "no such reference": "no such file or folder",
        "no such prediction": "no such file or folder",
        "malformed": "a.csv:2: malformed row",
        "unknown clip": "no reference CSV named nope.csv",
    }[problem]
    if problem == "no such reference":
        args[1] = tmp_path / "missing.csv"
    elif problem == "no such prediction":
        args[3] = tmp_path / "missing"
    elif problem == "malformed":
        pred.write_text("0,0,0,1.0,0.0,0.0,1.0\n1,0,zero,1.0,0.0,0.0,1.0\n")
    else:
        args = ["--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "-o", tmp_path / "out", "--clip", "nope"]
    result = _invoke(*args)
    assert isinstance(result.exception, SeldEdgeError), result.output
    assert expected in str(result.exception)
    assert not (tmp_path / "out").exists()


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch):
    for module in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(SeldEdgeError, match=r"install seld-edge\[plot\] \(matplotlib\)"):
        plot_clip(REFERENCE, PREDICTION, tmp_path / "clip.png", "clip", STARSS23_CLASSES)
    assert not (tmp_path / "clip.png").exists()


def test_runs_group_consecutive_frames():
    assert _runs([]) == []
    assert _runs([0, 1, 2, 5, 7, 8]) == [(0, 3), (5, 6), (7, 9)]


# --------------------------------------------------------------------------------------------------
# What the panels show: stereo azimuths, distances, empty predictions, the clip's length, scores, runs


def _panels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel() and ax.get_ylabel() != "learning rate"]


@needs_matplotlib
def test_stereo_data_has_front_azimuths_and_no_elevation_panel():
    from seld_edge.plot import clip_figure

    stereo = [Event(f, 0, 0, 40.0, 0.0, 2.0) for f in range(10)]
    fig = clip_figure(stereo, stereo, "clip", STARSS23_CLASSES, stereo=True)
    assert _panels(fig) == ["activity", "azimuth (°)", "distance (m)"]
    assert fig.axes[1].get_ylim() == pytest.approx((-94.5, 94.5))
    fig = clip_figure(REFERENCE, PREDICTION, "clip", STARSS23_CLASSES)
    assert _panels(fig) == ["activity", "azimuth (°)", "elevation (°)", "distance (m)"]
    assert fig.axes[1].get_ylim() == pytest.approx((-189.0, 189.0))


@needs_matplotlib
def test_a_distance_panel_only_when_the_data_has_distances():
    from seld_edge.plot import clip_figure

    no_distance = [Event(f, 7, 0, -90.0, -20.0) for f in range(15)]
    zero_distance = [Event(f, 7, 0, -80.0, -20.0, 0.0) for f in range(15)]  # a model without distances writes 0
    fig = clip_figure(no_distance, zero_distance, "clip", STARSS23_CLASSES)
    assert _panels(fig) == ["activity", "azimuth (°)", "elevation (°)"]
    distances = clip_figure(REFERENCE, [], "clip", STARSS23_CLASSES).axes[3]
    assert distances.collections[0].get_offsets()[:, 1].tolist() == [1.5] * 20  # the class 0 track's 1.5 m


@needs_matplotlib
@pytest.mark.parametrize(
    ("prediction", "notice"), [(None, "no prediction file"), ([], "empty prediction: no events"), (PREDICTION, None)]
)
def test_an_empty_or_missing_prediction_is_marked(prediction, notice):
    from seld_edge.plot import clip_figure

    fig = clip_figure(REFERENCE, prediction, "clip", STARSS23_CLASSES)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ([] if notice is None else [notice])


@needs_matplotlib
def test_the_time_axis_runs_to_the_clips_end_and_the_title_has_the_scores():
    from seld_edge.plot import clip_figure

    fig = clip_figure(REFERENCE, PREDICTION, "clip", STARSS23_CLASSES, duration_s=30.0,
                      scores={"F": 0.5, "LE": 12.25, "SELD": 0.4})  # fmt: skip
    assert fig.axes[-1].get_xlim() == (0.0, 30.0)  # the last event ends at 2.5 s
    assert fig.axes[0].get_title() == "clip\nF 0.500   LE 12.25   SELD 0.400"
    assert clip_figure(REFERENCE, PREDICTION, "clip", STARSS23_CLASSES).axes[-1].get_xlim() == (0.0, 2.5)


@needs_matplotlib
def test_the_command_finds_the_audio_length_form_and_scores(tmp_path, monkeypatch):
    import soundfile as sf

    import seld_edge.plot
    from seld_edge.metrics import evaluate

    calls = []
    monkeypatch.setattr(seld_edge.plot, "plot_clip", lambda ref, pred, out, title, names, **kw: calls.append(kw))
    root = tmp_path / "data"
    (root / "foa_dev" / "dev-test").mkdir(parents=True)
    sf.write(root / "foa_dev" / "dev-test" / "a.wav", np.zeros((12 * 24000, 4), np.float32), 24000)  # 12 s
    write_events(root / "metadata_dev" / "dev-test" / "a.csv", REFERENCE, form="polar")
    _write_csv(tmp_path / "pred" / "a.csv", PREDICTION)
    stereo = [Event(f, 0, 0, 40.0, 0.0, 2.0) for f in range(10)]
    write_events(root / "metadata_dev" / "dev-test" / "b.csv", stereo, form="dcase2025")
    write_events(tmp_path / "pred" / "b.csv", stereo, form="dcase2025")
    result = _invoke("--ref", root / "metadata_dev", "--pred", tmp_path / "pred", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    a, b = calls
    assert a["duration_s"] == 12.0 and not a["stereo"] and set(a["scores"]) == {"ER", "F", "LE", "LR", "SELD"}
    assert a["scores"]["F"] == evaluate([(REFERENCE, PREDICTION)])["F"]
    assert b["duration_s"] is None and b["stereo"] and set(b["scores"]) == {"F", "AE", "DE", "RDE"}


@needs_matplotlib
def test_plot_run_draws_the_training_curves(tmp_path):
    from pathlib import Path

    from seld_edge.plot import training_figure

    run = Path(__file__).resolve().parents[1] / "seld_edge" / "assets" / "seldnet_synth"
    result = _invoke("--run", run, "-o", tmp_path / "curves.png")
    assert result.exit_code == 0, result.output
    assert imread(tmp_path / "curves.png").shape[:2] == PIXELS
    fig = training_figure(run / "metrics.csv", "seldnet_synth")
    print(fig.axes[0].get_title())
    assert fig.axes[0].get_title().startswith("seldnet_synth: best epoch 74 of 88 (SELD 0.312")
    assert _panels(fig) == ["train loss", "validation score", "validation error"]
    (tmp_path / "run").mkdir()
    result = _invoke("--run", tmp_path / "run")
    assert isinstance(result.exception, SeldEdgeError) and "cannot read training metrics" in str(result.exception)
