"""Live input: `seld-edge run MODEL - --stream` on a pipe of 16-bit PCM (raw or WAV) and `--device` through
a fake sounddevice module. Each gives the CSV that `run --stream` gives for the same audio in a 16-bit WAV
file, written frame by frame as the frames are decided."""

import json
import select
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from seld_edge.cli import main
from seld_edge.formats import Event, format_events
from seld_edge.synth import scene_audio

MODEL = Path(__file__).resolve().parents[1] / "seld_edge" / "assets" / "seldnet_synth.onnx"
RATE = 24000
SECONDS = 6.0


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A synthetic FOA scene as 16-bit PCM bytes and as a 16-bit WAV file, with the CSV that
    `run --stream` writes for that file."""
    from click.testing import CliRunner

    root = tmp_path_factory.mktemp("live")
    pcm = np.clip(np.round(scene_audio("foa", SECONDS) * 32768), -32768, 32767).astype("<i2").T  # (samples, 4)
    wav = root / "scene.wav"
    sf.write(wav, pcm, RATE, subtype="PCM_16")
    result = CliRunner().invoke(main, ["run", str(MODEL), str(wav), "--stream", "-o", str(root / "file")])
    assert result.exit_code == 0, result.output
    expected = (root / "file" / "scene.csv").read_text()
    assert expected.count("\n") > 10, "the scene has events"
    return pcm, wav, expected


def test_a_pcm_pipe_gives_the_file_streams_csv_frame_by_frame(scene, tmp_path):
    pcm, _, expected = scene
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "seld_edge", "run", str(MODEL), "-", "--stream", "--channels", "4", "--rate", "24000",
         "-o", str(out), "--json-lines"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    half = len(pcm) // 2
    proc.stdin.write(pcm[:half].tobytes())
    proc.stdin.flush()
    # Frames come out while the pipe is still open: the first JSON line arrives before the rest is written.
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    assert ready, "no label frame within 120 s of 3 s of audio"
    first = json.loads(proc.stdout.readline())
    assert first["frame"] == 0 and first["time"] == 0.0
    rows_while_open = (out / "live.csv").read_text().count("\n")
    proc.stdin.write(pcm[half:].tobytes())
    proc.stdin.close()
    rest, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    frames = [first, *map(json.loads, rest.splitlines())]
    print(err.strip(), f"\n{len(frames)} frames; {rows_while_open} CSV rows while the pipe was open")
    assert [f["frame"] for f in frames] == list(range(round(SECONDS * 10)))
    assert (out / "live.csv").read_text() == expected
    assert sum(len(f["events"]) for f in frames) == expected.count("\n")
    assert "per-block latency" in err and "Traceback" not in err


def test_a_wav_stream_on_stdin_reads_its_header(cli, scene, tmp_path):
    _, wav, expected = scene
    result = cli.invoke(main, ["run", str(MODEL), "-", "-o", str(tmp_path / "out")], input=wav.read_bytes())
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "live.csv").read_text() == expected


@pytest.mark.parametrize(
    ("args", "stereo_wav", "message"),
    [
        (["--channels", "2"], False, "error: standard input: 2 channels, the model takes 4"),
        (["--rate", "48000"], False, "error: standard input: 48000 Hz, the model takes 24000 Hz"),
        ([], True, "error: standard input: 2 channels, the model takes 4"),
    ],
)
def test_a_source_the_model_cannot_take_is_one_line(cli, tmp_path, args, stereo_wav, message):
    if stereo_wav:
        sf.write(tmp_path / "s.wav", np.zeros((RATE, 2), np.int16), RATE, subtype="PCM_16")
        data = (tmp_path / "s.wav").read_bytes()
    else:
        data = np.zeros((RATE, 4), "<i2").tobytes()
    result = cli.invoke(main, ["run", str(MODEL), "-", *args, "-o", str(tmp_path / "out")], input=data)
    assert result.exit_code == 2 and result.output == message + "\n"


def fake_sounddevice(wav: Path, live_csv: Path, seen: list[int]) -> types.ModuleType:
    """A stand-in for the sounddevice module: one capture device whose InputStream delivers the WAV file's
    samples block by block and then raises KeyboardInterrupt (the user's Ctrl-C). At each read it notes
    how many lines live.csv holds, to show that rows are written while capture goes on."""
    module = types.ModuleType("sounddevice")

    class PortAudioError(Exception):
        pass

    class InputStream:
        def __init__(self, device, channels, samplerate, dtype, blocksize):
            assert (device, channels, samplerate, dtype) == ("Fake USB array", 4, RATE, "float32")
            self.blocks = sf.blocks(str(wav), blocksize=blocksize, dtype="float32", always_2d=True)

        def __enter__(self):
            return self

        def __exit__(self, *_):
            return False

        def read(self, frames):
            seen.append(live_csv.read_text().count("\n") if live_csv.exists() else -1)
            block = next(self.blocks, None)
            if block is None:
                raise KeyboardInterrupt
            return block, False

    module.PortAudioError = PortAudioError
    module.InputStream = InputStream
    module.query_devices = lambda: [
        {"index": 0, "name": "Fake USB array", "max_input_channels": 4, "default_samplerate": 24000.0},
        {"index": 1, "name": "Fake speaker", "max_input_channels": 0, "default_samplerate": 48000.0},
    ]
    return module


def test_device_capture_through_sounddevice_until_ctrl_c(cli, scene, tmp_path, monkeypatch):
    _, wav, expected = scene
    seen: list[int] = []
    monkeypatch.setitem(sys.modules, "sounddevice", fake_sounddevice(wav, tmp_path / "out" / "live.csv", seen))
    result = cli.invoke(
        main, ["run", str(MODEL), "--device", "Fake USB array", "--stream", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "live.csv").read_text() == expected
    final = expected.count("\n")
    print(f"live.csv lines at each read: {seen[::10]} ... {seen[-1]} of {final}")
    assert seen == sorted(seen) and 0 < seen[len(seen) // 2] < final, "rows are flushed while capturing"

    result = cli.invoke(main, ["run", "--list-devices"])
    assert result.exit_code == 0 and result.output.splitlines() == [
        "  0  Fake USB array                             4 channels  24000 Hz"
    ]
    result = cli.invoke(main, ["run", str(MODEL), "--device", "x", "--channels", "2", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and result.output == "error: --device x: 2 channels, the model takes 4\n"


def test_without_sounddevice_the_error_names_the_extra(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    for args in (["run", str(MODEL), "--device", "hw:1", "-o", str(tmp_path)], ["run", "--list-devices"]):
        result = cli.invoke(main, args)
        assert result.exit_code == 2 and result.output.count("\n") == 1
        assert "pip install seld-edge[live]" in result.output


def test_live_rows_of_a_headed_form_equal_the_whole_file(tmp_path):
    from runtime.live import LiveOutput
    from runtime.stream import LabelFrame

    meta = types.SimpleNamespace(format=types.SimpleNamespace(csv_form="dcase2025"), class_names=["a", "b"])
    frames = [LabelFrame(0, ()), LabelFrame(1, (Event(1, 1, 0, 30.0, 0.0, 2.0, 0), Event(1, 0, 0, -20.0, 0.0, 1.0, 0)))]
    lines: list[str] = []
    with LiveOutput(tmp_path / "live.csv", meta, lines.append) as output:
        for frame in frames:
            output.write(frame)
    assert (tmp_path / "live.csv").read_text() == format_events([e for f in frames for e in f.events], "dcase2025")
    assert [json.loads(line)["frame"] for line in lines] == [0, 1]
    assert json.loads(lines[1])["events"][0] == {
        "class": 1, "name": "b", "source": 0, "azimuth": 30.0, "elevation": 0.0, "distance": 2.0
    }  # fmt: skip
