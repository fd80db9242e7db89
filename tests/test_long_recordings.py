"""Offline inference in blocks: the CSVs of the whole clip computed at once, in memory that does not grow
with the recording (issue: `run` on a 2-hour file peaked at 6.9 GB, 10 minutes at 0.69 GB).

The blocks are made small here (FileFeatures reads of one 64-frame block, one window per model call) so
that short clips cross many block borders: of the features' reads, the overlap averaging, a faster or
slower model's grid frames and the median filter.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from runtime.model import load_model
from runtime.pipeline import OFFLINE_BATCH, clip_events, run_files
from seld_edge.audio import write_audio
from seld_edge.features import FileFeatures, feature_config, features_from_file
from seld_edge.formats import format_events
from seld_edge.model_metadata import INPUT_NAME
from tests.conftest import SAMPLE_RATE
from tests.test_runtime import build_model, metadata, scene_clip

ROOT = Path(__file__).resolve().parents[1]


def _csv_of_whole_clip(model, files: dict[str, Path], tta: bool = False) -> str:
    """Today's offline result: every input's features of the whole file in memory, then the clip's events."""
    features = {i.name: features_from_file(files[i.name], i.feature_config) for i in model.metadata.inputs}
    events = clip_events(model, features, tta=tta, batch_size=OFFLINE_BATCH)
    return format_events(events, model.metadata.format.csv_form)


@pytest.mark.parametrize(
    ("median_size", "window_labels", "seconds"),
    [(1, 50, 31.0), (5, 20, 17.33), (3, 50, 3.0), (7, 10, 0.6)],
    ids=["long", "median 5", "shorter than the window", "short window"],
)
def test_an_onnx_model_writes_the_whole_clip_s_csv(tmp_path, monkeypatch, median_size, window_labels, seconds):
    monkeypatch.setattr(FileFeatures, "FRAMES_PER_READ", 64)
    config = feature_config("foa_logmel_iv")
    model = load_model(build_model(tmp_path / "m.onnx", metadata(config, median_size, window_labels)))
    clip = np.tile(scene_clip(), (1, 8))[:, : round(seconds * SAMPLE_RATE)]
    write_audio(tmp_path / "clip.wav", clip, SAMPLE_RATE)
    run_files(model, tmp_path / "clip.wav", tmp_path / "out", progress=False)
    written = (tmp_path / "out" / "clip.csv").read_text()
    assert written == _csv_of_whole_clip(model, {INPUT_NAME: tmp_path / "clip.wav"})
    print(f"{seconds} s: {written.count(chr(10))} events, equal")
    assert written.count("\n") > 0 or seconds < 1


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    from seld_edge.synth import generate_dataset

    root = tmp_path_factory.mktemp("long")
    generate_dataset(root / "foa_mic", fmt="foa,mic", n_train=0, n_test=1, seconds=23.7, seed=5, progress=False)
    generate_dataset(root / "stereo", fmt="stereo", n_train=0, n_test=1, seconds=23.7, seed=6, progress=False)
    return {"foa_mic": root / "foa_mic", "stereo": root / "stereo"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "data", "tta"),
    [("toy_sed_doa_5hz", "foa_mic", True), ("toy_accdoa_20hz", "foa_mic", False), ("toy_stereo", "stereo", True),
     ("toy_sed_doa", "foa_mic", False)],
    ids=["5 Hz with TTA", "20 Hz", "stereo with TTA", "two recordings"],
)  # fmt: skip
def test_models_of_other_rates_inputs_and_tta_write_the_whole_clip_s_csv(
    tmp_path, monkeypatch, datasets, toys, name, data, tta
):
    """Untrained toy models (random weights give events enough) through the PyTorch side of the pipeline."""
    torch = pytest.importorskip("torch")
    from seld_edge.models import new_system
    from seld_edge.models.system import system_metadata
    from seld_edge.postprocess import PostProcessing
    from training.predict import TorchModel

    monkeypatch.setattr(FileFeatures, "FRAMES_PER_READ", 64)
    torch.manual_seed(0)
    system = new_system(name).eval()
    meta = system_metadata(system, [f"c{i}" for i in range(13)], 2.0, PostProcessing(thresholds=0.1, median_size=3))
    model = TorchModel(system, meta)
    folders = {i.name: datasets[data] / i.feature_config.audio_folder for i in meta.inputs}
    source = datasets[data] if len(folders) > 1 else next(iter(folders.values()))
    run_files(model, source, tmp_path / "out", progress=False, tta=tta)
    (written,) = (tmp_path / "out").glob("*.csv")
    formats = {i.feature_config.audio_format for i in meta.inputs}
    files = {name: next(folder.rglob("*.wav")) for name, folder in folders.items()}
    assert written.read_text() == _csv_of_whole_clip(model, files, tta)
    lines = written.read_text().count("\n")
    print(f"{name} ({', '.join(sorted(formats))}): {lines} lines, equal")
    assert lines > 10


MEASURE = textwrap.dedent(
    """
    import resource, runpy, sys
    sys.argv = ["seld-edge", *sys.argv[1:]]
    try:
        runpy.run_module("seld_edge", run_name="__main__")
    except SystemExit as done:
        assert not done.code, done.code
    print("peak", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """
)


def _peak_bytes(*args: str) -> int:
    """The peak resident memory of one `seld-edge` command in a process of its own."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *args], capture_output=True, text=True, cwd=ROOT, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return int(proc.stdout.split("peak ")[-1])


def _recording(path: Path, minutes: int) -> Path:
    """minutes of 4-channel FOA: a 4 s scene over and over, written piece by piece."""
    with sf.SoundFile(path, "w", SAMPLE_RATE, 4, "PCM_16") as out:
        piece = scene_clip().T
        for _ in range(minutes * 15):
            out.write(piece)
    return path


@pytest.mark.slow
def test_memory_of_an_offline_run_does_not_grow_with_the_recording(tmp_path):
    """10 against 60 minutes: the same peak (within 5 %), and within 1.5 x of --stream's. Before this change
    the offline path held the whole recording and its features: 673 MB for 10 minutes, 3421 MB for 60 with
    this model (171 MB and 172 MB after it; --stream 171 MB)."""
    model = build_model(tmp_path / "m.onnx", metadata(feature_config("foa_logmel_iv")))
    peaks = {}
    for minutes in (10, 60):
        audio = _recording(tmp_path / f"{minutes}.wav", minutes)
        peaks[minutes] = _peak_bytes(
            "run", str(model), str(audio), "-o", str(tmp_path / f"out{minutes}"), "--threads", "1"
        )
        if minutes == 10:
            stream = _peak_bytes("run", str(model), str(audio), "-o", str(tmp_path / "stream"), "--stream",
                                 "--threads", "1")  # fmt: skip
        audio.unlink()
    print(f"peak resident memory: offline {peaks[10] / 2**20:.0f} MB for 10 min, {peaks[60] / 2**20:.0f} MB for "
          f"60 min; --stream {stream / 2**20:.0f} MB for 10 min")  # fmt: skip
    assert peaks[60] <= 1.05 * peaks[10]
    assert max(peaks.values()) <= 1.5 * stream
    rows = (tmp_path / "out60" / "60.csv").read_text().count("\n")
    assert rows > 5 * (tmp_path / "out10" / "10.csv").read_text().count("\n") > 0
