"""`seld-edge convert stereo`: FOA in the STARSS layout to DCASE 2025 stereo clips, on synthetic FOA.

The expected labels are computed here from the DCASE 2025 rules directly (fold, cm, onscreen inside the
camera's +-50 x +-30 deg), not through the converter's own helpers."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from seld_edge.cli import main
from seld_edge.features import feature_config, features_from_file
from seld_edge.formats import find_clips, read_events
from seld_edge.synth import generate_dataset

SECONDS = 12.0  # 2 clips of 5 s and a 2 s tail per recording
HEADER = "frame,class,source,azimuth,distance,onscreen"


@pytest.fixture(scope="module")
def foa(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("foa")
    generate_dataset(root, fmt="foa", n_train=2, n_test=1, seconds=SECONDS, seed=1, progress=False)
    return root


def fold(azimuth: float) -> float:
    """Front-back fold: a source at azimuth a and one at 180 - a give the same stereo pair."""
    if azimuth > 90:
        return 180 - azimuth
    if azimuth < -90:
        return -180 - azimuth
    return azimuth


def expected_rows(source_csv: Path, k: int, frames_per_clip: int) -> list[tuple]:
    rows = []
    for line in source_csv.read_text().split():
        frame, cls, src, azimuth, elevation, distance_cm = (float(v) for v in line.split(","))
        if k * frames_per_clip <= frame < (k + 1) * frames_per_clip:
            onscreen = int(abs(azimuth) <= 50 and abs(elevation) <= 30)
            rows.append((int(frame) - k * frames_per_clip, int(cls), int(src), fold(azimuth), distance_cm, onscreen))
    return sorted(rows)


def converted_rows(csv: Path) -> list[tuple]:
    lines = csv.read_text().splitlines()
    assert lines[0] == HEADER
    return sorted(
        (int(f), int(c), int(s), float(a), float(d), int(o)) for f, c, s, a, d, o in (x.split(",") for x in lines[1:])
    )


def test_clips_hold_mid_side_audio_and_folded_renumbered_labels(foa, tmp_path, cli):
    dst = tmp_path / "stereo"
    result = cli.invoke(main, ["convert", "stereo", str(foa), str(dst)])
    assert result.exit_code == 0, result.output
    print(result.output.strip())
    assert "wrote 6 stereo clips of 5 s from 3 FOA recordings" in result.output and "6.0 s of tails" in result.output
    sources = sorted((foa / "foa_dev").rglob("*.wav"))
    for source in sources:
        split = source.parent.name
        original, rate = sf.read(source, dtype="float32", always_2d=True)
        w, y = original[:, 0], original[:, 1]
        clips = sorted((dst / "stereo_dev" / split).glob(f"{source.stem}_*.wav"))
        assert [c.name for c in clips] == [f"{source.stem}_000.wav", f"{source.stem}_001.wav"]
        for k, clip in enumerate(clips):
            stereo, clip_rate = sf.read(clip, dtype="float32", always_2d=True)
            part = slice(k * 5 * rate, (k + 1) * 5 * rate)
            assert clip_rate == rate and stereo.shape == (5 * rate, 2)
            np.testing.assert_array_equal(stereo[:, 0], w[part] + y[part])  # L = W + Y, exactly
            np.testing.assert_array_equal(stereo[:, 1], w[part] - y[part])  # R = W - Y
            rows = converted_rows(dst / "metadata_dev" / split / f"{clip.stem}.csv")
            assert rows == expected_rows(foa / "metadata_dev" / split / f"{source.stem}.csv", k, 50)
            assert all(-90 <= row[3] <= 90 and 0 <= row[0] < 50 for row in rows)
    behind = [row for csv in (foa / "metadata_dev").rglob("*.csv") for row in csv.read_text().split()
              if int(row.split(",")[0]) < 100 and abs(float(row.split(",")[3])) > 90]  # fmt: skip
    assert behind, "some source azimuths in the clips lie behind, so the fold is exercised"
    # The result is a data set the rest of the package reads: clips paired with metadata, 2 x 251 x 64 features.
    clips = find_clips(dst, "stereo_dev")
    assert len(clips) == 6 and all(c.metadata is not None for c in clips)
    assert all(e.distance > 0 for e in read_events(clips[0].metadata, reference=True))
    assert features_from_file(clips[0].audio, feature_config("stereo_logmel")).shape == (2, 251, 64)


@pytest.mark.parametrize(("clip_seconds", "per_file", "tail_seconds"), [(5.0, 2, 2.0), (4.0, 3, 0.0), (2.5, 4, 2.0)])
def test_clip_length_that_does_or_does_not_divide_the_recording(
    foa, tmp_path, cli, clip_seconds, per_file, tail_seconds
):
    dst = tmp_path / "out"
    dst.mkdir()  # an empty DST folder is taken (the first test's did not exist)
    result = cli.invoke(main, ["convert", "stereo", str(foa), str(dst), "--clip-seconds", str(clip_seconds)])
    assert result.exit_code == 0, result.output
    assert (
        f"wrote {3 * per_file} stereo clips" in result.output and f"{3 * tail_seconds:.1f} s of tails" in result.output
    )
    for wav in (dst / "stereo_dev").rglob("*.wav"):
        assert sf.info(wav).frames == round(clip_seconds * 24000), "every clip has the full length"
    frames = round(clip_seconds * 10)
    last = f"fold1_room1_mix001_{per_file - 1:03d}"
    rows = converted_rows(dst / "metadata_dev" / "dev-train-synth" / f"{last}.csv")
    source = foa / "metadata_dev" / "dev-train-synth" / "fold1_room1_mix001.csv"
    assert rows == expected_rows(source, per_file - 1, frames)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda src, dst: (src / "foa_dev").rename(src / "mic_dev"), "no foa_dev/ folder"),
        (lambda src, dst: (dst / "keep.txt").write_text("x"), "already exists and is not an empty folder"),
        (
            lambda src, dst: sf.write(src / "foa_dev" / "dev-test-synth" / "two.wav", np.zeros((100, 2)), 24000),
            "two.wav: 2 channels, expected 4",
        ),
        (
            lambda src, dst: (src / "metadata_dev" / "dev-test-synth" / "fold2_room1_mix001.csv").write_text(
                "0,1,0,30,10\n"
            ),
            "no distance column",
        ),
    ],
    ids=["no-foa", "dst-not-empty", "stereo-in-foa", "no-distance"],
)
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(foa, tmp_path, cli, make_bad, message):
    src = tmp_path / "src"
    _copy(foa, src)
    dst = tmp_path / "dst"
    dst.mkdir()
    make_bad(src, dst)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli.invoke(main, ["convert", "stereo", str(src), str(dst)])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not leftovers(tmp_path)
    assert not (dst / "stereo_dev").exists()


@pytest.mark.parametrize(("clip_seconds", "message"), [("0.25", "multiple of 0.1 s"), ("0", "multiple of 0.1 s"),
                                                       ("13", "no recording is 13 s long")])  # fmt: skip
def test_clip_lengths_that_cannot_be_cut(foa, tmp_path, cli, clip_seconds, message):
    result = cli.invoke(main, ["convert", "stereo", str(foa), str(tmp_path / "dst"), "--clip-seconds", clip_seconds])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "dst").exists() and not leftovers(tmp_path)


def test_a_failure_while_writing_leaves_nothing_behind(foa, tmp_path, cli, monkeypatch):
    import seld_edge.convert as convert
    from seld_edge.errors import SeldEdgeError

    written = []

    def failing_write(path, audio, rate, subtype):
        if len(written) == 3:
            raise SeldEdgeError(f"{path}: cannot write (disk full)")
        written.append(path)
        convert_write(path, audio, rate, subtype=subtype)

    convert_write = convert.write_audio
    monkeypatch.setattr(convert, "write_audio", failing_write)
    result = cli.invoke(main, ["convert", "stereo", str(foa), str(tmp_path / "dst")])
    assert result.exit_code == 2 and "disk full" in result.output
    assert len(written) == 3 and not any(p.exists() for p in written), "three clips were written, then removed"
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no DST, no scratch folder"


def _copy(src: Path, dst: Path) -> None:
    import shutil

    shutil.copytree(src, dst)
