"""`seld-edge eval` questions its input: missing predictions, other data forms, absent classes,
per-class results; warnings on stderr, the scores unchanged (equal to seld_edge.metrics.evaluate)."""

import json

import numpy as np
import pytest

from seld_edge.cli import main
from seld_edge.formats import STARSS23_CLASSES
from seld_edge.formats.dcase_csv import Event, write_events
from seld_edge.geometry import angular_distance_deg, polar_to_unit
from seld_edge.metrics import evaluate


def track(frames: range, cls: int, az: float, el: float = 0.0, dist: float = 2.0) -> list[Event]:
    return [Event(f, cls, 0, az, el, dist) for f in frames]


def scene(k: int, classes: range = range(10)) -> list[Event]:
    """One reference per class of ``classes``, 2 s each, at a class-dependent frontal azimuth."""
    return [e for c in classes for e in track(range(5 * (c % 4), 5 * (c % 4) + 20), c, -80.0 + 15 * c + k, 10.0)]


def write_refs(root, n: int, form: str = "polar", classes: range = range(10)) -> list[list[Event]]:
    refs = [scene(k, classes) for k in range(n)]
    for k, events in enumerate(refs):
        write_events(root / "dev-test" / f"clip{k}.csv", events, form=form)
    return refs


def invoke(cli, *args):
    return cli.invoke(main, ["eval", *map(str, args)])


def test_an_empty_prediction_folder_is_an_error(cli, tmp_path):
    write_refs(tmp_path / "ref", 2)
    (tmp_path / "pred").mkdir()
    result = invoke(cli, "--ref", tmp_path / "ref", "--pred", tmp_path / "pred")
    assert result.exit_code == 2
    assert result.output == f"error: {tmp_path / 'pred'}: no prediction CSV files\n"


def test_missing_predictions_are_named_on_stderr_and_scored_as_empty(cli, tmp_path):
    refs = write_refs(tmp_path / "ref", 8)
    for k in range(2):
        write_events(tmp_path / "pred" / f"clip{k}.csv", refs[k])
    result = invoke(cli, "--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "--json")
    assert result.exit_code == 0, result.output
    print(result.stderr)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "6 of 8 references have no prediction" in warnings[0]
    scores = json.loads(result.stdout)  # stdout stays one JSON object
    expected = evaluate([(r, r if k < 2 else []) for k, r in enumerate(refs)], "dcase2023", 13)
    assert scores == pytest.approx(expected, abs=0.01)  # Cartesian CSVs keep 4 decimals: angles move by ~0.002
    assert scores["F"] < 0.5


@pytest.mark.parametrize(
    ("ref_form", "pred_form", "metric", "outcome"),
    [
        ("dcase2025", "cartesian", "dcase2023", "error"),  # FOA predictions against stereo references
        ("polar", "dcase2025", "dcase2024", "error"),  # stereo predictions against FOA references
        ("dcase2025", "cartesian", "dcase2025", "warning: 2 predictions are in the FOA/MIC form"),
        ("polar", "cartesian", "dcase2025", "warning: the references are FOA/MIC data: dcase2025 folds"),
        ("dcase2025", "dcase2025", "dcase2021", "warning: the references are DCASE 2025 stereo data"),
        ("polar", "cartesian", "dcase2024", None),
        ("dcase2025", "dcase2025", "dcase2025", None),
    ],
)
def test_other_data_forms_are_questioned(cli, tmp_path, ref_form, pred_form, metric, outcome):
    refs = write_refs(tmp_path / "ref", 2, form=ref_form)
    for k, events in enumerate(refs):
        write_events(tmp_path / "pred" / f"clip{k}.csv", events, form=pred_form)
    result = invoke(cli, "--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "--metric", metric)
    print(result.output)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    if outcome == "error":
        assert result.exit_code == 2 and result.output.count("\n") == 1
        assert "make its localization scores meaningless" in result.output
        return
    assert result.exit_code == 0, result.output
    if outcome is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(outcome)
    assert result.stdout.startswith("ER " if metric != "dcase2025" else "F ")


def test_absent_classes_are_explained_and_scores_stay_official(cli, tmp_path):
    write_refs(tmp_path / "ref", 2, form="dcase2025")  # 10 of the 13 classes
    result = invoke(cli, "--ref", tmp_path / "ref", "--pred", tmp_path / "ref", "--metric", "dcase2025", "--json")
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["F"] == pytest.approx(10 / 13) and f"{scores['F']:.4f}" == "0.7692"
    (note,) = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    print(note)
    assert "3 of 13 classes never occur in the references (water_tap, bell, knock)" in note
    assert "counts each as F 0, so F is at most 0.7692" in note


@pytest.mark.parametrize("metric", ["dcase2023", "dcase2024", "dcase2025"])
def test_per_class_results_average_to_the_scores(cli, tmp_path, metric):
    form = "dcase2025" if metric == "dcase2025" else "polar"
    refs = write_refs(tmp_path / "ref", 2, form=form, classes=range(3))
    # Class 0 right, class 1 at the wrong direction, class 2 missed.
    for k, events in enumerate(refs):
        pred = [e if e.class_index == 0 else Event(e.frame, 1, 0, e.azimuth + 60.0, e.elevation, e.distance)
                for e in events if e.class_index != 2]  # fmt: skip
        write_events(tmp_path / "pred" / f"clip{k}.csv", pred, form="dcase2025" if form == "dcase2025" else "cartesian")
    args = ["--ref", tmp_path / "ref", "--pred", tmp_path / "pred", "--metric", metric, "--per-class"]
    as_json = invoke(cli, *args, "--json")
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.stdout)
    rows = report.pop("per_class")
    assert [r["class"] for r in rows] == list(range(13)) and [r["name"] for r in rows] == list(STARSS23_CLASSES)
    f = [r["F"] for r in rows]
    print(metric, f[:4])
    assert f[0] == pytest.approx(1.0) and f[1] == 0.0 and f[2] == 0.0 and f[3:] == [0.0] * 10
    assert report["F"] == pytest.approx(np.mean(f), abs=1e-12)
    angle = "AE" if metric == "dcase2025" else "LE"
    matched = [r[angle] for r in rows if r[angle] is not None]
    if metric == "dcase2023":
        assert report["LE"] == pytest.approx(np.mean([r["LE"] for r in rows]))  # 180 for a class never matched
        assert report["SELD"] == pytest.approx(np.mean([r["SELD"] for r in rows]))
    else:
        assert len(matched) == 2 and report[angle] == pytest.approx(np.mean(matched))  # nanmean
    # 60 degrees of azimuth at elevation 10: a 59.0 degree great circle; dcase2025 compares azimuths alone.
    wrong = 60.0 if metric == "dcase2025" else float(angular_distance_deg(polar_to_unit(0, 10), polar_to_unit(60, 10)))
    assert rows[1][angle] == pytest.approx(wrong, abs=0.01)

    text = invoke(cli, *args)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    print("\n".join(lines))
    assert len(lines) == 15 and lines[0].split()[0] == "class" and lines[1].split()[:2] == ["0", "female_speech"]
    assert lines[-1].startswith("ER " if metric != "dcase2025" else "F ")


def test_per_class_is_refused_for_the_micro_averaged_2021_metric(cli, tmp_path):
    write_refs(tmp_path / "ref", 1)
    result = invoke(cli, "--ref", tmp_path / "ref", "--pred", tmp_path / "ref", "--metric", "dcase2021", "--per-class")
    assert result.exit_code == 2 and "micro" in result.output
