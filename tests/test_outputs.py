"""Every command's outputs under faults (tests/faults.py): a full disk, a read-only folder, a folder in the way.

The promise (README): a failed run leaves no partial file and keeps what was there before. Each command
writes its outputs as one set, checks its targets before any work, and ends a failure in one line with
exit code 2, leaving no staging folder and no empty output folder behind.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.model import load_model
from runtime.pipeline import run_files
from seld_edge.audio import write_audio
from seld_edge.cli import main
from seld_edge.errors import SeldEdgeError
from seld_edge.features import feature_config
from tests.conftest import SAMPLE_RATE
from tests.faults import HOW, FullDisk, one_line_error
from tests.test_runtime import build_model, metadata, scene_clip

torch = pytest.importorskip("torch")

from seld_edge.synth import generate_dataset  # noqa: E402
from tests.test_export import make_checkpoint  # noqa: E402
from training.fit import main as fit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "seld_edge" / "assets"


def setup_module() -> None:
    print(f"faults by {HOW}")


pytestmark = pytest.mark.usefixtures("toys")  # the toy models of tests/toy_models.py (conftest.py)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """Three 4 s scenes a, b, c: every CSV of them holds events (about 1.5 KB)."""
    folder = tmp_path_factory.mktemp("clips")
    for name in "abc":
        write_audio(folder / f"{name}.wav", scene_clip(), SAMPLE_RATE)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """The model each inference command takes: an ONNX file for run, a checkpoint for predict."""
    onnx_path = build_model(tmp_path_factory.mktemp("model") / "pool.onnx", metadata(feature_config("foa_logmel_iv")))
    return {"run": onnx_path, "predict": ASSETS / "seldnet_synth"}


class CountingModel:
    """A model that counts its calls: the checks of the targets must come before the first."""

    def __init__(self, model) -> None:
        self.model, self.calls = model, 0

    @property
    def metadata(self):
        return self.model.metadata

    def __call__(self, features):
        self.calls += 1
        return self.model(features)


@pytest.mark.parametrize("command", [["run"], ["run", "--stream"], ["predict"]], ids=" ".join)
def test_a_full_disk_keeps_the_earlier_output_and_leaves_no_folder(cli, full_disk, models, clips, command):
    """The issue's case: out/a.csv holds old content, 4 KB are free, three CSVs to write."""
    out = full_disk.folder / "out"
    out.mkdir()
    (out / "a.csv").write_text("old\n")
    full_disk.fill()
    result = cli.invoke(main, [command[0], str(models[command[0]]), str(clips), "-o", str(out), *command[1:]])
    assert result.exit_code == 2, result.output
    one_line_error(result.output, "cannot write", "No space left on device")
    assert full_disk.files() == {"out/a.csv": b"old\n"} and full_disk.entries() == ["out", "out/a.csv"]

    result = cli.invoke(main, [command[0], str(models[command[0]]), str(clips), "-o", str(full_disk.folder / "x/y")])
    assert result.exit_code == 2 and "No space left on device" in result.output
    assert full_disk.entries() == ["out", "out/a.csv"], "no empty output folder is left behind"


@pytest.mark.parametrize("command", ["run", "predict"])
def test_a_folder_in_the_way_is_refused_before_any_inference(cli, models, clips, tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.csv").write_text("old\n")
    (out / "b.csv").mkdir()
    result = cli.invoke(main, [command, str(models[command]), str(clips), "-o", str(out)])
    assert result.exit_code == 2
    one_line_error(result.output, "b.csv: a folder is in the way of this output file")
    assert (out / "a.csv").read_text() == "old\n" and sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv"]

    model = CountingModel(load_model(models["run"]))
    with pytest.raises(SeldEdgeError, match=r"b\.csv: a folder is in the way"):
        run_files(model, clips, out, progress=False)
    assert model.calls == 0
    new = tmp_path / "new" / "out"
    (tmp_path / "new").write_text("a file where a folder should be")
    with pytest.raises(SeldEdgeError, match=r"new/out: cannot write \(.*new is a file, not a folder\)"):
        run_files(model, clips, new, progress=False)
    assert model.calls == 0


def test_a_read_only_folder_is_refused_and_keeps_its_files(cli, read_only, models, clips):
    (read_only.folder / "a.csv").write_text("old\n")
    read_only.lock()
    model = CountingModel(load_model(models["run"]))
    with pytest.raises(SeldEdgeError, match="cannot write"):
        run_files(model, clips, read_only.folder, progress=False)
    assert model.calls == 0
    result = cli.invoke(main, ["run", str(models["run"]), str(clips), "-o", str(read_only.folder)])
    assert result.exit_code == 2
    one_line_error(result.output, f"{read_only.folder}")
    assert sorted(p.name for p in read_only.folder.iterdir()) == ["a.csv"]
    assert (read_only.folder / "a.csv").read_text() == "old\n"


@pytest.mark.parametrize("stream", [[], ["--stream"]], ids=["offline", "stream"])
def test_an_error_halfway_through_a_folder_changes_nothing_and_stderr_ends_with_it(models, clips, tmp_path, stream):
    """Clip b's samples overflow float32 power spectra (3e38): the run stops after clip a was done, in one
    line that is the last of stderr (the progress bar is closed before it), and writes no CSV. A stream
    wrote b's CSV from NaN features (no events after the loud block) and exited 0."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in "ac":
        (folder / f"{name}.wav").write_bytes((clips / f"{name}.wav").read_bytes())
    loud = scene_clip()
    loud[:, 30000:30010] = 3e38
    write_audio(folder / "b.wav", loud, SAMPLE_RATE, subtype="FLOAT")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.csv").write_text("old\n")
    proc = subprocess.run(
        [sys.executable, "-m", "seld_edge", "run", str(models["run"]), str(folder), "-o", str(out), *stream],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.rstrip("\n").split("\n")[-1]
    assert last.startswith(f"error: {folder / 'b.wav'}: its features are not finite: the samples reach 3e+38"), last
    assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr and proc.stderr.count("error:") == 1
    assert [p.name for p in out.iterdir()] == ["a.csv"] and (out / "a.csv").read_text() == "old\n"


# --------------------------------------------------------------------------------------------------
# features


def test_features_on_a_full_disk_keep_the_earlier_file(cli, full_disk, clips):
    out = full_disk.folder / "f.npy"
    np.save(out, np.arange(3))
    earlier = out.read_bytes()
    full_disk.fill()
    result = cli.invoke(main, ["features", str(clips / "a.wav"), "--kind", "foa_logmel_iv", "-o", str(out)])
    assert result.exit_code == 2
    one_line_error(result.output, "f.npy: cannot write", "No space left on device")
    assert full_disk.files() == {"f.npy": earlier}
    result = cli.invoke(main, ["features", str(clips / "a.wav"), "--kind", "foa_logmel_iv",
                               "-o", str(full_disk.folder / "new" / "f.npy")])  # fmt: skip
    assert result.exit_code == 2 and full_disk.entries() == ["f.npy"]


def test_features_refuse_to_overwrite_their_own_input(cli, clips, tmp_path):
    wav = tmp_path / "audio.wav"
    wav.write_bytes((clips / "a.wav").read_bytes())
    for out in (wav, tmp_path / "." / "audio.wav"):
        result = cli.invoke(main, ["features", str(wav), "--kind", "foa_logmel_iv", "-o", str(out)])
        assert result.exit_code == 2
        one_line_error(result.output, "that is the input audio")
    assert wav.read_bytes() == (clips / "a.wav").read_bytes()


# --------------------------------------------------------------------------------------------------
# export


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory) -> Path:
    stem = tmp_path_factory.mktemp("toy") / "best"
    make_checkpoint(stem, "toy_accdoa_20hz")
    return stem.with_suffix(".json")


def test_export_on_a_full_disk_keeps_the_earlier_model(cli, full_disk, toy_checkpoint):
    out = full_disk.folder / "m.onnx"
    out.write_bytes(b"earlier model")
    full_disk.fill(0)
    result = cli.invoke(main, ["export", str(toy_checkpoint), "-o", str(out)])
    assert result.exit_code == 2
    one_line_error(result.output, "m.onnx: cannot write", "No space left on device")
    assert full_disk.files() == {"m.onnx": b"earlier model"}
    result = cli.invoke(main, ["export", str(toy_checkpoint), "-o", str(full_disk.folder / "new" / "m.onnx")])
    assert result.exit_code == 2 and full_disk.entries() == ["m.onnx"]


def test_export_checks_its_target_before_exporting(cli, toy_checkpoint, tmp_path):
    (tmp_path / "file").write_text("")
    result = cli.invoke(main, ["export", str(toy_checkpoint), "-o", str(tmp_path / "file" / "m.onnx")])
    assert result.exit_code == 2
    one_line_error(result.output, "file: cannot write (it is a file, not a folder)")
    assert "onnx: exporting" not in result.output, "refused before the export"


def test_export_into_a_read_only_folder_keeps_the_earlier_model(cli, read_only, toy_checkpoint):
    (read_only.folder / "m.onnx").write_bytes(b"earlier model")
    read_only.lock()
    result = cli.invoke(main, ["export", str(toy_checkpoint), "-o", str(read_only.folder / "m.onnx")])
    assert result.exit_code == 2
    one_line_error(result.output, f"{read_only.folder}", "cannot write")
    assert "onnx: exporting" not in result.output, "refused before the export"
    assert (read_only.folder / "m.onnx").read_bytes() == b"earlier model"


# --------------------------------------------------------------------------------------------------
# synth

SYNTH = ["--test", "0", "--seconds", "1", "--no-reflections"]


def test_synth_on_a_full_disk_keeps_the_earlier_data_set(cli, full_disk):
    out = full_disk.folder / "data"
    assert cli.invoke(main, ["synth", str(out), "--train", "1", "--seed", "1", *SYNTH]).exit_code == 0
    earlier = full_disk.files()
    assert len(earlier) == 2
    full_disk.fill()
    result = cli.invoke(main, ["synth", str(out), "--train", "2", "--seed", "2", *SYNTH])
    assert result.exit_code == 2
    one_line_error(result.output, "cannot write", "No space left on device")
    assert full_disk.files() == earlier
    result = cli.invoke(main, ["synth", str(full_disk.folder / "other"), "--train", "1", *SYNTH])
    assert result.exit_code == 2 and "other" not in full_disk.entries()


def test_synth_refuses_a_folder_in_the_way_before_rendering(cli, tmp_path):
    (tmp_path / "data" / "metadata_dev" / "dev-train-synth" / "fold1_room1_mix001.csv").mkdir(parents=True)
    result = cli.invoke(main, ["synth", str(tmp_path / "data"), "--train", "1", *SYNTH])
    assert result.exit_code == 2
    one_line_error(result.output, "fold1_room1_mix001.csv: a folder is in the way")
    assert "synth:" not in result.output, "no scene was rendered"
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["metadata_dev"]


# --------------------------------------------------------------------------------------------------
# the training run folder

FAST = ["--model", "seldnet", "--device", "cpu", "batch_size=4", "model.rnn_size=16", "model.filters=8",
        "eval_hop_seconds=4", "chunk_seconds=2"]  # fmt: skip


@pytest.fixture(scope="module")
def train_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("traindata")
    generate_dataset(root, n_train=1, n_test=1, seconds=4.0, seed=3, progress=False)
    return root


def test_a_run_folder_on_a_full_disk_keeps_its_last_epoch_or_is_not_left_at_all(
    train_data, tmp_path, monkeypatch, capsys
):
    disk = FullDisk(tmp_path / "disk", monkeypatch, size=16 << 20)
    try:
        run = disk.folder / "run"
        fit([*FAST, "--data", str(train_data), "--out", str(run), "--epochs", "1"])
        earlier = disk.files()
        assert {"run/last.json", "run/last_state.json", "run/metrics.csv", "run/config.json"} <= set(earlier)
        capsys.readouterr()
        disk.fill()
        with pytest.raises(SystemExit) as info:
            fit([*FAST, "--data", str(train_data), "--out", str(run), "--epochs", "2", "--resume"])
        assert info.value.code == 2
        error = one_line_error(capsys.readouterr().err, "cannot write", "No space left on device")
        assert disk.files() == earlier, "epoch 1's checkpoints, state and metrics are whole and unchanged"
        with pytest.raises(SystemExit) as info:
            fit([*FAST, "--data", str(train_data), "--out", str(disk.folder / "run2"), "--epochs", "1"])
        assert info.value.code == 2 and "No space left on device" in capsys.readouterr().err
        assert "run2" not in disk.entries(), error
    finally:
        disk.close()


def test_an_unwritable_run_folder_is_refused_before_any_data_is_read(train_data, tmp_path, capsys, monkeypatch):
    def load_clips(*args, **kwargs):
        raise AssertionError("data read before the run folder was checked")

    monkeypatch.setattr("training.fit.load_clips", load_clips)
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as info:
        fit([*FAST, "--data", str(train_data), "--out", str(tmp_path / "file" / "run")])
    assert info.value.code == 2
    one_line_error(capsys.readouterr().err, "run: cannot write")
