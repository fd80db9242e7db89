"""`seld-edge plot`: valid PNGs of a fixed size, pairing by clip name, user errors as SeldEdgeError."""

import sys

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
    monkeypatch.setattr(seld_edge.plot, "plot_clip", lambda ref, pred, out, title, names: calls.append((pred, title)))
    for name in ("a", "b"):
        _write_csv(tmp_path / "ref" / f"{name}.csv", REFERENCE)
    _write_csv(tmp_path / "pred" / "a.csv", PREDICTION)
    result = _invoke("--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "-o", tmp_path / "out", "--clip", "b")
    assert result.exit_code == 0, result.output
    assert calls == [([], "b (no prediction)")]
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
