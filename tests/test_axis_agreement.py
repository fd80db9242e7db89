"""`seld-edge eval --axes`: how closely each axis of the predicted directions follows the reference's.

The diagnostic exists for one failure the DCASE scores hide: a model that ignores an axis (glfer_net_tiny at
lr 2e-3 put out a constant z). It must show that axis, and only that axis, as uncorrelated.
"""

import json

import numpy as np
import pytest

from seld_edge.cli import main
from seld_edge.formats.dcase_csv import Event, write_events
from seld_edge.metrics.axes import AxisAgreementCounter


def random_events(rng: np.random.Generator, n: int) -> list[Event]:
    """n events, one per frame, random class, azimuth over the circle and elevation within +-45 deg."""
    return [
        Event(f, int(rng.integers(13)), 0, float(rng.uniform(-180, 180)), float(rng.uniform(-45, 45))) for f in range(n)
    ]


def test_identical_directions_correlate_fully_and_a_negated_z_anticorrelates():
    rng = np.random.default_rng(0)
    ref = random_events(rng, 200)
    same, flipped = AxisAgreementCounter(), AxisAgreementCounter()
    same.update(ref, ref)
    flipped.update(ref, [Event(e.frame, e.class_index, 0, e.azimuth, -e.elevation) for e in ref])
    assert same.result().pairs == flipped.result().pairs == 200
    assert same.result().correlation == pytest.approx({"x": 1.0, "y": 1.0, "z": 1.0})
    assert flipped.result().correlation == pytest.approx({"x": 1.0, "y": 1.0, "z": -1.0})


def test_a_model_that_ignores_z_shows_only_there():
    rng = np.random.default_rng(1)
    ref = random_events(rng, 400)
    # Right azimuth, elevation noise of a few degrees around the horizon: what the collapsed model did.
    pred = [Event(e.frame, e.class_index, 0, e.azimuth + rng.normal(0, 5), rng.normal(0, 1)) for e in ref]
    counter = AxisAgreementCounter()
    counter.update(ref, pred)
    result = counter.result()
    print(result)
    assert result.correlation["x"] > 0.95 and result.correlation["y"] > 0.95
    assert abs(result.correlation["z"]) < 0.15
    assert result.prediction_std["z"] < 0.05 < 0.3 < result.reference_std["z"]


def test_pairs_are_frames_and_classes_with_one_event_on_each_side():
    ref = [Event(0, 1, 0, 10.0, 0.0), Event(0, 1, 1, 50.0, 0.0), Event(1, 1, 0, 10.0, 0.0), Event(2, 2, 0, 0.0, 0.0)]
    pred = [Event(0, 1, 0, 10.0, 0.0), Event(1, 1, 0, 12.0, 0.0), Event(1, 2, 0, 0.0, 0.0), Event(3, 2, 0, 0.0, 0.0)]
    counter = AxisAgreementCounter()
    counter.update(ref, pred)
    result = counter.result()
    assert result.pairs == 1  # frame 0 has two class-1 sources in the reference; frames 2 and 3 only one side
    assert np.isnan(result.correlation["x"]), "one pair has no correlation"


def test_eval_axes_prints_the_correlations_and_json_carries_them(cli, tmp_path):
    rng = np.random.default_rng(2)
    for k in range(3):
        ref = random_events(rng, 100)
        write_events(tmp_path / "ref" / f"clip{k}.csv", ref, form="polar")
        write_events(
            tmp_path / "pred" / f"clip{k}.csv", [Event(e.frame, e.class_index, 0, e.azimuth, 0.0) for e in ref]
        )
    args = ["eval", "--ref", str(tmp_path / "ref"), "--pred", str(tmp_path / "pred"), "--axes"]
    text = cli.invoke(main, args)
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0] == "directions over 300 (frame, class) pairs with one event on each side:"
    # x = cos(el) cos(az): putting every source on the horizon changes it a little; z does not vary at all.
    assert lines[1].startswith("  x: correlation   0.99") and lines[3].startswith("  z: correlation       -")
    as_json = cli.invoke(main, [*args, "--json"])
    axes = json.loads(as_json.stdout)["axes"]
    assert axes["pairs"] == 300
    assert axes["y"]["correlation"] > 0.99
    assert axes["z"] == {"correlation": None, "reference_std": pytest.approx(axes["z"]["reference_std"]),
                         "prediction_std": 0.0}  # fmt: skip
    plain = cli.invoke(main, [*args[:-1], "--json"])
    assert "axes" not in json.loads(plain.stdout), "only on request: the default output keeps its keys"
