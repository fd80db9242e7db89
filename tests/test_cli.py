"""The command line: forms from design.md, one-line errors with exit code 2, nothing lost on failure."""

import subprocess
import sys

import numpy as np

from seld_edge.features import compute_features, feature_config
from tests.conftest import plane_wave_foa
from tests.test_audio_and_csv import write_wav


def test_features_command_writes_the_numpy_features(cli, tmp_path):
    from seld_edge.cli import main

    audio = plane_wave_foa(2.0, 45.0, 0.0)
    wav = write_wav(tmp_path / "clip.wav", audio)
    result = cli.invoke(main, ["features", str(wav), "--kind", "foa_logmel_iv", "-o", str(tmp_path / "f.npy")])
    assert result.exit_code == 0, result.output
    saved = np.load(tmp_path / "f.npy")
    np.testing.assert_array_equal(saved, compute_features(audio, feature_config("foa_logmel_iv")))
    assert saved.shape == (7, 100, 64)


def test_features_bad_input_keeps_the_previous_output(cli, tmp_path):
    from seld_edge.cli import main

    out = tmp_path / "f.npy"
    np.save(out, np.arange(3))
    stereo = write_wav(tmp_path / "stereo.wav", plane_wave_foa(1.0, 0, 0)[:2])
    result = cli.invoke(main, ["features", str(stereo), "--kind", "foa_logmel_iv", "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {stereo}: 2 channels, expected 4"
    np.testing.assert_array_equal(np.load(out), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy", "stereo.wav"]


def test_too_short_audio_is_a_user_error(cli, tmp_path):
    from seld_edge.cli import main

    wav = write_wav(tmp_path / "short.wav", plane_wave_foa(0.01, 0, 0))
    result = cli.invoke(main, ["features", str(wav), "--kind", "foa_logmel_iv", "-o", str(tmp_path / "f.npy")])
    assert result.exit_code == 2 and "too short" in result.output


def test_unwritable_output_is_a_user_error(cli, tmp_path):
    from seld_edge.cli import main

    wav = write_wav(tmp_path / "clip.wav", plane_wave_foa(0.5, 0, 0))
    (tmp_path / "file").write_text("")
    result = cli.invoke(main, ["features", str(wav), "--kind", "foa_logmel_iv", "-o", str(tmp_path / "file/f.npy")])
    assert result.exit_code == 2 and "cannot write" in result.output


def test_console_script_prints_one_line_and_no_traceback(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "seld_edge", "features", str(tmp_path / "bad.wav"), "--kind", "foa_logmel_iv",
         "-o", str(tmp_path / "f.npy")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "not readable audio" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "f.npy").exists()
