"""The synthetic scene generator: layout, determinism, labels, physics of the FOA encoding, stereo, MIC
(its physics: tests/test_mic_array.py)."""

import itertools
from collections import Counter, defaultdict

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from seld_edge.audio import read_audio
from seld_edge.errors import SeldEdgeError
from seld_edge.formats import NUM_CLASSES, find_clips, read_events
from seld_edge.geometry import angular_distance_deg
from seld_edge.synth import (
    SAMPLE_RATE,
    SceneEvent,
    generate_dataset,
    generate_scene,
    label_events,
    place_events,
    render_scene,
    sample_room,
)
from seld_edge.synth.dataset import ROOM_STREAM, SCENE_STREAM
from seld_edge.synth.sounds import synthesize
from seld_edge.synth.spatial import diffuse_noise

HOP = SAMPLE_RATE // 10


def small_dataset(out, fmt="foa", n_train=2, n_test=1, seed=0):
    return generate_dataset(out, fmt=fmt, n_train=n_train, n_test=n_test, seconds=3.0, seed=seed, progress=False)


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def intensity_direction(foa: np.ndarray) -> np.ndarray:
    """Active intensity vector (x, y, z) = sum of Re(conj(W) [X, Y, Z]) over an STFT."""
    _, _, spec = signal.stft(foa, nperseg=512)
    return np.real(np.conj(spec[0]) * spec[[3, 1, 2]]).sum(axis=(1, 2))


def test_layout_and_file_names(tmp_path):
    paths = small_dataset(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "foa_dev/dev-train-synth/fold1_room1_mix001.wav",
        "foa_dev/dev-train-synth/fold1_room2_mix002.wav",
        "foa_dev/dev-test-synth/fold2_room1_mix001.wav",
    ]
    clips = find_clips(tmp_path)
    assert sorted(c.audio for c in clips) == sorted(paths)
    assert all(c.metadata == tmp_path / "metadata_dev" / c.folder / f"{c.name}.csv" for c in clips)
    assert Counter(c.split for c in clips) == {"train": 2, "test": 1}
    for clip in clips:
        info = sf.info(str(clip.audio))
        assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 4, 3 * SAMPLE_RATE)
        assert info.subtype == "PCM_16"
        assert len(clip.metadata.read_text().splitlines()[0].split(",")) == 6  # frame,class,source,az,el,dist_cm
    assert not list(tmp_path.rglob("*.tmp")), "no temporary files left behind"


def test_same_seed_same_bytes_and_added_scenes_keep_earlier_ones(tmp_path):
    small_dataset(tmp_path / "a")
    small_dataset(tmp_path / "b")
    assert files(tmp_path / "a") == files(tmp_path / "b")
    small_dataset(tmp_path / "a", n_train=3, n_test=2)  # overwrites in place and adds scenes
    grown = files(tmp_path / "a")
    assert len(grown) == 2 * 5
    assert all(grown[name] == content for name, content in files(tmp_path / "b").items())


def test_other_seed_other_audio(tmp_path):
    first = small_dataset(tmp_path / "a", n_train=1, n_test=0)[0]
    second = small_dataset(tmp_path / "b", n_train=1, n_test=0, seed=1)[0]
    a, b = read_audio(first), read_audio(second)
    assert np.abs(a - b).mean() > 0.1 * np.abs(a).mean()


def test_labels_are_valid():
    for k in range(3):
        foa, events = generate_scene(10.0, np.random.default_rng(k))
        assert foa.shape == (4, 10 * SAMPLE_RATE) and foa.dtype == np.float32
        assert events and all(0 <= e.frame < 100 for e in events)
        assert all(0 <= e.class_index < NUM_CLASSES for e in events)
        assert all(-180 <= e.azimuth <= 180 and -45 <= e.elevation <= 45 for e in events)
        assert all(e.azimuth == int(e.azimuth) and e.elevation == int(e.elevation) for e in events)
        assert all(1.0 <= e.distance <= 5.0 for e in events)
        assert max(Counter(e.frame for e in events).values()) <= 3
        assert len({(e.frame, e.class_index, e.source) for e in events}) == len(events)


def test_written_labels_match_generated_scene(tmp_path):
    path = small_dataset(tmp_path, n_train=1, n_test=0)[0]
    written = read_events(tmp_path / "metadata_dev/dev-train-synth" / f"{path.stem}.csv", reference=True)
    room = sample_room(np.random.default_rng([0, 0, ROOM_STREAM, 1]))  # seed 0, train split, room 1
    foa, events = generate_scene(3.0, np.random.default_rng([0, 0, SCENE_STREAM, 1]), room=room)  # mix 1
    assert written == events
    assert np.abs(read_audio(path) - foa).max() < 1e-4


@pytest.mark.parametrize("class_index", range(NUM_CLASSES))
def test_static_source_intensity_points_at_label(class_index):
    rng = np.random.default_rng(class_index)
    room = sample_room(rng)
    event = SceneEvent(class_index, 0, 0.5, 2.0, rng.uniform(-180, 180), 0.0, rng.uniform(-45, 45), 3.0)
    foa = render_scene([event], 3.0, rng, room, reflections=False)  # with the diffuse background
    labels = label_events([event])
    assert [e.frame for e in labels] == list(range(5, 25))
    assert {(e.azimuth, e.elevation) for e in labels} == {(round(event.azimuth), round(event.elevation))}
    start, stop = event.span(SAMPLE_RATE)
    assert np.std(foa[0, start:stop]) > 5 * np.std(foa[0, :start])  # background about 20 dB down
    measured = intensity_direction(foa[:, start:stop])
    assert angular_distance_deg(measured, labels[0].unit_vector()) < 5.0


def test_generated_static_sources_are_where_labelled():
    """In one-source scenes every static event's intensity vector points at its label."""
    checked = 0
    for k in range(2):
        foa, events = generate_scene(15.0, np.random.default_rng(k), reflections=False, max_polyphony=1)
        runs: list[list] = []  # events of one layer are separated by at least one unlabelled frame
        for event in events:
            if runs and event.frame == runs[-1][-1].frame + 1:
                runs[-1].append(event)
            else:
                runs.append([event])
        for run in runs:
            if len({e.azimuth for e in run}) == 1 and len(run) >= 3:
                inner = foa[:, run[1].frame * HOP : run[-1].frame * HOP]  # frames fully inside the event
                assert angular_distance_deg(intensity_direction(inner), run[0].unit_vector()) < 5.0
                checked += 1
    assert checked >= 3


def test_moving_source_labels_follow_the_sound():
    rng = np.random.default_rng(0)
    event = SceneEvent(5, 0, 0.0, 3.0, 170.0, 40.0, 10.0, 2.0)  # a steady hum crossing the +-180 deg seam
    foa = render_scene([event], 3.0, rng, sample_room(rng), reflections=False)
    labels = label_events([event])
    assert [e.frame for e in labels] == list(range(30))
    steps = np.diff([e.azimuth for e in labels])
    assert set((steps + 180) % 360 - 180) == {4.0}  # 40 deg/s over 100 ms frames
    for frame in (2, 12, 22):
        window = foa[:, frame * HOP : (frame + 3) * HOP]
        middle = labels[frame + 1]  # the label at the window's centre
        assert angular_distance_deg(intensity_direction(window), middle.unit_vector()) < 5.0


def test_generated_scenes_have_moving_and_static_sources():
    tracks = defaultdict(set)
    for k in range(3):
        _, events = generate_scene(10.0, np.random.default_rng(k), reflections=False)
        for e in events:
            tracks[(k, e.class_index, e.source)].add(e.azimuth)
    spread = Counter(len(azimuths) > 1 for azimuths in tracks.values())
    assert spread[True] > 0 and spread[False] > 0


def test_same_class_overlaps_get_distinct_sources():
    overlaps = 0
    for k in range(20):
        rng = np.random.default_rng(k)
        events = label_events(place_events(30.0, rng, sample_room(rng)))
        per_frame_class = Counter((e.frame, e.class_index) for e in events)
        overlaps += sum(count > 1 for count in per_frame_class.values())
        assert len({(e.frame, e.class_index, e.source) for e in events}) == len(events)
        assert {e.source for e in events} <= {0, 1, 2}
    assert overlaps > 0


def test_stereo_is_w_plus_minus_y_of_the_foa_scene(tmp_path):
    foa_path = small_dataset(tmp_path / "foa", n_train=1, n_test=0)[0]
    stereo_path = small_dataset(tmp_path / "stereo", "stereo", n_train=1, n_test=0)[0]
    assert stereo_path.relative_to(tmp_path / "stereo").as_posix() == "stereo_dev/dev-train-synth/" + foa_path.name
    foa, stereo = read_audio(foa_path), read_audio(stereo_path)
    assert stereo.shape == (2, foa.shape[1])
    assert np.abs(stereo[0] - (foa[0] + foa[1])).max() < 2e-4
    assert np.abs(stereo[1] - (foa[0] - foa[1])).max() < 2e-4
    csv = tmp_path / "stereo/metadata_dev/dev-train-synth" / f"{foa_path.stem}.csv"
    assert csv.read_text().splitlines()[0] == "frame,class,source,azimuth,distance,onscreen"
    polar = read_events(tmp_path / "foa/metadata_dev/dev-train-synth" / f"{foa_path.stem}.csv", reference=True)
    folded = read_events(csv)
    assert len(folded) == len(polar)
    for ref, e in zip(polar, folded, strict=True):
        assert (e.frame, e.class_index, e.source, e.distance) == (ref.frame, ref.class_index, ref.source, ref.distance)
        assert -90 <= e.azimuth <= 90
        assert np.isclose(np.sin(np.deg2rad(e.azimuth)), np.sin(np.deg2rad(ref.azimuth)), atol=1e-9)
        assert e.onscreen == int(abs(ref.azimuth) <= 50 and abs(ref.elevation) <= 30)


def test_mic_data_set_is_the_foa_scenes_seen_by_the_tetrahedral_array(tmp_path):
    foa_only = small_dataset(tmp_path / "foa", n_train=1, n_test=1)
    both = small_dataset(tmp_path / "both", "foa,mic", n_train=1, n_test=1)
    small_dataset(tmp_path / "mic", "mic", n_train=1, n_test=1)
    assert [p.relative_to(tmp_path / "both").as_posix() for p in both] == [
        "foa_dev/dev-train-synth/fold1_room1_mix001.wav",
        "mic_dev/dev-train-synth/fold1_room1_mix001.wav",
        "foa_dev/dev-test-synth/fold2_room1_mix001.wav",
        "mic_dev/dev-test-synth/fold2_room1_mix001.wav",
    ]
    written = files(tmp_path / "both")
    # FOA and metadata as the FOA-only set, byte for byte; MIC as the MIC-only set.
    assert {k: v for k, v in written.items() if not k.startswith("mic_dev/")} == files(tmp_path / "foa")
    assert {k: v for k, v in written.items() if not k.startswith("foa_dev/")} == files(tmp_path / "mic")
    clips = find_clips(tmp_path / "both", "mic_dev")
    assert [c.name for c in clips] == [p.stem for p in foa_only][::-1]  # sorted by split folder
    for clip in clips:
        info = sf.info(str(clip.audio))
        assert (info.samplerate, info.channels, info.frames) == (SAMPLE_RATE, 4, 3 * SAMPLE_RATE)
        assert info.subtype == "PCM_16"
        assert clip.metadata == tmp_path / "both" / "metadata_dev" / clip.folder / f"{clip.name}.csv"
        mic, foa = read_audio(clip.audio), read_audio(tmp_path / "both" / "foa_dev" / clip.folder / clip.audio.name)
        assert np.abs(mic - foa).max() > 0.01, "a different recording, not a copy"
        assert np.corrcoef(signal.decimate(np.vstack([foa[:1], mic]), 48, axis=1))[0, 1:].min() > 0.9  # < 250 Hz: W


def test_synth_command_writes_both_formats_or_says_why_not(cli, tmp_path):
    from seld_edge.cli import main

    result = cli.invoke(main, ["synth", str(tmp_path / "d"), "--format", "foa,mic", "--train", "1", "--test", "0",
                               "--seconds", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 1 scene (foa, mic)" in result.output
    assert [p.relative_to(tmp_path / "d").as_posix() for p in sorted((tmp_path / "d").rglob("*.*"))] == [
        "foa_dev/dev-train-synth/fold1_room1_mix001.wav",
        "metadata_dev/dev-train-synth/fold1_room1_mix001.csv",
        "mic_dev/dev-train-synth/fold1_room1_mix001.wav",
    ]
    for bad, reason in (("foa,stereo", "stereo cannot be written with other formats"), ("mic,mic", "distinct")):
        result = cli.invoke(main, ["synth", str(tmp_path / "e"), "--format", bad])
        assert result.exit_code == 2 and result.output.count("\n") == 1 and reason in result.output
    assert not (tmp_path / "e").exists()


def test_audio_is_in_range_without_clipping():
    rng = np.random.default_rng(0)
    loud = [SceneEvent(2, source, 0.2, 2.0, 90.0, 0.0, 0.0, 1.0) for source in range(3)]  # claps side by side
    foa = render_scene(loud, 3.0, rng, sample_room(rng))
    assert np.max(np.abs(foa[0]) + np.abs(foa[1])) <= 0.99 + 1e-6  # stereo L = W + Y fits too
    for k in range(2):
        foa, _ = generate_scene(10.0, np.random.default_rng(k))
        assert 0.05 < np.abs(foa).max() <= 0.99


def test_reflections_are_late_unlabelled_copies():
    rng = np.random.default_rng(0)
    room = sample_room(rng)
    event = SceneEvent(10, 0, 0.5, 1.0, 30.0, 0.0, 0.0, 3.0)  # a steady hiss up to its last sample
    dry = render_scene([event], 3.0, np.random.default_rng(1), room, reflections=False)
    wet = render_scene([event], 3.0, np.random.default_rng(1), room, reflections=True)
    start, stop = event.span(SAMPLE_RATE)
    assert np.abs(wet[:, :start]).max() == pytest.approx(np.abs(dry[:, :start]).max(), rel=0.2)  # background only
    after = slice(stop, stop + SAMPLE_RATE // 100)
    assert np.sum(wet[0, after] ** 2) > 3 * np.sum(dry[0, after] ** 2)  # the reflections' tail
    with_reflections = generate_scene(5.0, np.random.default_rng(2), reflections=True)[1]
    assert with_reflections == generate_scene(5.0, np.random.default_rng(2), reflections=False)[1]


def test_background_is_isotropic():
    noise = diffuse_noise(SAMPLE_RATE * 2, np.random.default_rng(0), SAMPLE_RATE)
    rms = np.sqrt(np.mean(noise**2, axis=1))
    assert rms == pytest.approx([1.0, 3**-0.5, 3**-0.5, 3**-0.5], rel=1e-6)
    assert np.abs(np.corrcoef(noise) - np.eye(4)).max() < 0.05
    w_power = np.sum(np.abs(signal.stft(noise[0], nperseg=512)[2]) ** 2)
    assert np.linalg.norm(intensity_direction(noise)) < 0.1 * w_power  # no direction of its own


def test_class_sounds_are_distinct():
    """Nearest-centroid on band energies and envelope roughness tells the 13 classes apart."""
    rng = np.random.default_rng(0)
    edges = np.geomspace(60, 12000, 25)

    def features(sound):
        freqs, _, spec = signal.stft(sound, SAMPLE_RATE, nperseg=512)
        power = np.abs(spec) ** 2
        bands = np.log10(
            [power[(freqs >= lo) & (freqs < hi)].sum(axis=0).mean() + 1e-12 for lo, hi in itertools.pairwise(edges)]
        )
        envelope = np.log10(power.sum(axis=0) + 1e-12)
        return np.concatenate([bands - bands.max(), [envelope.std(), np.abs(np.diff(envelope)).mean()]])

    labels = np.repeat(np.arange(NUM_CLASSES), 6)
    x = np.array([features(synthesize(c, int(rng.uniform(0.5, 4.0) * SAMPLE_RATE), rng, SAMPLE_RATE)) for c in labels])
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    correct = 0
    for i in range(len(x)):
        others = np.arange(len(x)) != i
        centroids = np.array([x[others & (labels == c)].mean(axis=0) for c in range(NUM_CLASSES)])
        correct += np.argmin(np.sum((centroids - x[i]) ** 2, axis=1)) == labels[i]
    assert correct / len(x) >= 0.9


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(SeldEdgeError, match="unknown synth format 'binaural'"):
        generate_dataset(tmp_path, fmt="foa,binaural", progress=False)
    with pytest.raises(SeldEdgeError, match="too short"):
        generate_scene(0.5, np.random.default_rng(0))
    with pytest.raises(SeldEdgeError, match="max_polyphony"):
        generate_scene(2.0, np.random.default_rng(0), max_polyphony=4)
    assert not list(tmp_path.iterdir())


def test_resynthesising_into_a_folder_replaces_the_data_set_whole(cli, tmp_path):
    """Re-synthesising with fewer scenes left the earlier third scene beside 'wrote 2 scenes'; with other
    formats it left the earlier recordings of another seed beside the new metadata."""
    from seld_edge.cli import main

    def files(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    args = ["--test", "0", "--seconds", "1", "--no-reflections"]
    data, fresh = tmp_path / "data", tmp_path / "fresh"
    earlier = cli.invoke(main, ["synth", str(data), "--train", "3", "--seed", "1", "--format", "foa,mic", *args])
    assert earlier.exit_code == 0
    (data / "notes.txt").write_text("mine")
    result = cli.invoke(main, ["synth", str(data), "--train", "2", "--seed", "2", *args])
    assert result.exit_code == 0 and "wrote 2 scenes (foa)" in result.output
    assert cli.invoke(main, ["synth", str(fresh), "--train", "2", "--seed", "2", *args]).exit_code == 0
    assert {k: v for k, v in files(data).items() if k != "notes.txt"} == files(fresh)
    assert (data / "notes.txt").read_text() == "mine", "files that are not scenes are left alone"


@pytest.mark.parametrize("seconds", ["inf", "nan", "1e7", "0.5"])
def test_scene_lengths_out_of_range_are_refused_at_once(cli, tmp_path, seconds):
    """--seconds inf spun until killed, nan raised ValueError, 1e7 ran for ever."""
    from seld_edge.cli import main

    result = cli.invoke(main, ["synth", str(tmp_path / "d"), "--seconds", seconds])
    assert result.exit_code == 2 and "seconds" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "d").exists()
    with pytest.raises(SeldEdgeError, match="--seconds must be between 1 and 600"):
        generate_dataset(tmp_path / "d", seconds=float(seconds), progress=False)
