"""Audio reading checks, DCASE CSV forms and data set discovery."""

from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from seld_edge.audio import foa_to_stereo, read_audio, write_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.formats import Event, find_clips, find_csvs, format_events, read_events, write_events
from tests.conftest import SAMPLE_RATE, plane_wave_foa


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "FLOAT") -> Path:
    sf.write(path, audio.T, sample_rate, subtype=subtype)
    return path


def test_read_audio_round_trip(tmp_path):
    audio = plane_wave_foa(0.5, 10.0, 0.0)
    write_audio(tmp_path / "a.wav", audio, SAMPLE_RATE)
    back = read_audio(tmp_path / "a.wav", SAMPLE_RATE, 4)
    assert back.shape == audio.shape and back.dtype == np.float32
    assert np.abs(back - audio).max() < 1e-4  # 16-bit PCM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"], "no temporary file left behind"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: write_wav(p, plane_wave_foa(0.2, 0, 0), 48000), "sample rate 48000 Hz, expected 24000 Hz"),
        (lambda p: write_wav(p, plane_wave_foa(0.2, 0, 0)[:2]), "2 channels, expected 4"),
        (lambda p: p.write_bytes(b"RIFF not really a wave file"), "not readable audio"),
        (lambda p: write_wav(p, np.zeros((4, 0), np.float32)), "contains no audio samples"),
        (lambda p: write_wav(p, np.where(np.arange(4800) == 7, np.nan, 0.1) * np.ones((4, 1))), "NaN or infinite"),
        (lambda p: write_wav(p, np.full((4, 4800), np.inf)), "NaN or infinite"),
    ],
)
def test_bad_audio_gives_one_clear_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(SeldEdgeError, match=message) as info:
        read_audio(path, SAMPLE_RATE, 4)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_wav_is_refused(tmp_path):
    path = write_wav(tmp_path / "t.wav", plane_wave_foa(1.0, 0, 0), subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still announces the full length
    with pytest.raises(SeldEdgeError, match=r"t\.wav: truncated"):
        read_audio(path, SAMPLE_RATE, 4)


def test_foa_to_stereo_is_mid_side_of_w_and_y():
    foa = plane_wave_foa(0.1, 90.0, 0.0, noise=0.0)  # source on the left: Y = W
    stereo = foa_to_stereo(foa)
    np.testing.assert_allclose(stereo[0], 2 * foa[0], atol=1e-6)
    np.testing.assert_allclose(stereo[1], 0.0, atol=1e-6)
    with pytest.raises(SeldEdgeError, match="needs 4 channels"):
        foa_to_stereo(stereo)


EVENTS = [
    Event(0, 3, 0, 30.0, 10.0, 2.5),
    Event(0, 3, 1, -120.0, -20.0, 1.0),
    Event(5, 12, 0, 179.0, 45.0, 4.0),
]


def test_event_moves_keep_every_other_field():
    """at_frame and with_direction spell dataclasses.replace out for speed: a field added to Event and not
    to them would be lost silently, so they are held to replace field by field."""
    names = [field.name for field in fields(Event)]
    assert names == ["frame", "class_index", "source", "azimuth", "elevation", "distance", "onscreen"], (
        "Event's fields changed: update Event.at_frame and Event.with_direction, then this list"
    )
    event = Event(frame=7, class_index=3, source=2, azimuth=-40.5, elevation=12.25, distance=1.5, onscreen=1)
    assert event.at_frame(11) == replace(event, frame=11)
    assert event.with_direction(90.0, -30.0) == replace(event, azimuth=90.0, elevation=-30.0)
    changed = {"frame": 11, "azimuth": 90.0, "elevation": -30.0}
    for field in fields(Event):
        expected = changed.get(field.name, getattr(event, field.name))
        assert getattr(event.at_frame(11).with_direction(90.0, -30.0), field.name) == expected


def test_cartesian_form_round_trips(tmp_path):
    write_events(tmp_path / "p.csv", EVENTS, form="cartesian")
    first = (tmp_path / "p.csv").read_text().splitlines()[0]
    assert len(first.split(",")) == 7, "FOA predictions are written with 7 columns"
    back = read_events(tmp_path / "p.csv")
    for a, b in zip(EVENTS, back, strict=True):
        assert (a.frame, a.class_index, a.source) == (b.frame, b.class_index, b.source)
        assert b.azimuth == pytest.approx(a.azimuth, abs=0.05) and b.elevation == pytest.approx(a.elevation, abs=0.05)
        assert b.distance == pytest.approx(a.distance, abs=1e-4)


def test_reference_polar_form_is_read_in_metres(tmp_path):
    write_events(tmp_path / "r.csv", EVENTS, form="polar")
    assert (tmp_path / "r.csv").read_text().splitlines()[0] == "0,3,0,30,10,250"
    back = read_events(tmp_path / "r.csv", reference=True)
    assert [e.distance for e in back] == [2.5, 1.0, 4.0]
    five = tmp_path / "five.csv"
    five.write_text("3,1,0,-45,5\n")
    assert read_events(five) == [Event(3, 1, 0, -45.0, 5.0)]


def test_dcase2025_form_round_trips(tmp_path):
    events = [Event(2, 4, 0, -60.0, 0.0, 3.1, 1)]
    write_events(tmp_path / "s.csv", events, form="dcase2025")
    assert (tmp_path / "s.csv").read_text() == "frame,class,source,azimuth,distance,onscreen\n2,4,0,-60,310,1\n"
    assert read_events(tmp_path / "s.csv") == events


def test_empty_prediction_file_has_no_events(tmp_path):
    write_events(tmp_path / "e.csv", [], form="cartesian")
    assert (tmp_path / "e.csv").read_text() == ""
    assert read_events(tmp_path / "e.csv") == []


@pytest.mark.parametrize(
    ("row", "message"),
    [("1,2,0,30", "expected 5, 6 or 7 columns"), ("x,2,0,30,0", "malformed row"), ("1,2,0,nan,0", "non-finite"),
     ("1,2,0,,0", "empty field"), ("-1,2,0,30,0", "negative frame"), ("1,13,0,30,0", "class 13 out of range")],
)  # fmt: skip
def test_malformed_metadata_rows_name_file_and_line(tmp_path, row, message):
    path = tmp_path / "m.csv"
    path.write_text(f"0,1,0,10,0\n{row}\n")
    with pytest.raises(SeldEdgeError, match=message) as info:
        read_events(path, num_classes=13)
    assert f"{path}:2" in str(info.value)


def test_unknown_form_is_refused():
    with pytest.raises(ValueError, match="unknown CSV form"):
        format_events(EVENTS, form="xyz")


def test_find_clips_pairs_audio_with_metadata_by_split(tmp_path):
    for folder, name in [("dev-train-sony", "fold3_room21_mix001"), ("dev-test-tau", "fold4_room2_mix003")]:
        (tmp_path / "foa_dev" / folder).mkdir(parents=True)
        (tmp_path / "metadata_dev" / folder).mkdir(parents=True)
        write_wav(tmp_path / "foa_dev" / folder / f"{name}.wav", plane_wave_foa(0.1, 0, 0))
        write_events(tmp_path / "metadata_dev" / folder / f"{name}.csv", EVENTS[:1], form="polar")
    write_wav(tmp_path / "foa_dev" / "dev-test-tau" / "unlabelled.wav", plane_wave_foa(0.1, 0, 0))
    clips = {c.name: c for c in find_clips(tmp_path)}
    assert clips["fold3_room21_mix001"].split == "train" and clips["fold4_room2_mix003"].split == "test"
    assert clips["unlabelled"].metadata is None
    assert clips["fold4_room2_mix003"].metadata == tmp_path / "metadata_dev/dev-test-tau/fold4_room2_mix003.csv"
    assert set(find_csvs(tmp_path / "metadata_dev")) == {"fold3_room21_mix001", "fold4_room2_mix003"}


def test_find_clips_errors(tmp_path):
    with pytest.raises(SeldEdgeError, match="no foa_dev/ folder"):
        find_clips(tmp_path)
    (tmp_path / "stereo_dev").mkdir()
    with pytest.raises(SeldEdgeError, match=r"no foa_dev/ folder \(found stereo_dev\)"):
        find_clips(tmp_path)
    (tmp_path / "foa_dev").mkdir()
    with pytest.raises(SeldEdgeError, match="no audio files"):
        find_clips(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.csv").write_text("")
    (tmp_path / "b" / "x.csv").write_text("")
    with pytest.raises(SeldEdgeError, match=r"two files named x\.csv"):
        find_csvs(tmp_path)


def test_atomic_outputs_follow_the_umask_and_replace_whole(tmp_path):
    import os

    from seld_edge.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "out.csv", "a\n")
    finally:
        os.umask(old)
    assert (tmp_path / "out.csv").stat().st_mode & 0o777 == 0o644

    def failing(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        from seld_edge.io import atomic_write

        atomic_write(tmp_path / "out.csv", failing)
    assert (tmp_path / "out.csv").read_text() == "a\n" and len(list(tmp_path.iterdir())) == 1
