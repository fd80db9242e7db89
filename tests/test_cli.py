"""The command line: forms from design.md, one-line errors with exit code 2, nothing lost on failure."""

import json
import subprocess
import sys

import numpy as np
import pytest

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


def test_synth_then_eval_json_gives_the_design_keys(cli, tmp_path):
    from seld_edge.cli import main

    data = tmp_path / "data"
    result = cli.invoke(main, ["synth", str(data), "--train", "1", "--test", "2", "--seconds", "6", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert len(list((data / "foa_dev").rglob("*.wav"))) == 3
    refs = data / "metadata_dev"
    result = cli.invoke(main, ["eval", "--ref", str(refs), "--pred", str(refs), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)  # notes and warnings go to stderr
    assert set(scores) == {"ER", "F", "LE", "LR", "SELD"}
    # Macro averaging over all 13 classes: an absent class counts F = 0, LR = 0 and LE = 180.
    present = len({line.split(",")[1] for csv in refs.rglob("*.csv") for line in csv.read_text().splitlines()})
    assert scores["ER"] == 0.0
    assert scores["F"] == pytest.approx(present / 13) and scores["LR"] == pytest.approx(present / 13)
    assert scores["LE"] == pytest.approx(180.0 * (13 - present) / 13)

    empty_preds = tmp_path / "preds"  # a prediction file without rows for each clip (an empty folder is an error)
    empty_preds.mkdir()
    for csv in refs.rglob("*.csv"):
        (empty_preds / csv.name).write_text("")
    result = cli.invoke(
        main, ["eval", "--ref", str(refs), "--pred", str(empty_preds), "--json", "--metric", "dcase2024"]
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)  # notes and warnings go to stderr
    assert set(scores) == {"ER", "F", "LE", "LR", "SELD", "DE", "RDE"}
    assert scores["F"] == 0.0 and scores["ER"] == 1.0, "every reference event is a deletion"


def test_eval_and_synth_bad_input(cli, tmp_path):
    from seld_edge.cli import main

    (tmp_path / "empty").mkdir()
    result = cli.invoke(main, ["eval", "--ref", str(tmp_path / "empty"), "--pred", str(tmp_path / "empty")])
    assert result.exit_code == 2 and result.output.startswith("error: ") and result.output.count("\n") == 1
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.csv").write_text("0,1,0,10\n")
    result = cli.invoke(main, ["eval", "--ref", str(bad), "--pred", str(bad)])
    assert result.exit_code == 2 and "a.csv:1: malformed row" in result.output
    result = cli.invoke(main, ["synth", str(tmp_path / "s"), "--format", "binaural"])
    assert result.exit_code == 2


def test_features_of_samples_too_loud_for_float32_are_refused(cli, tmp_path):
    """A float WAV with samples at 3e38 gave every feature NaN and exit 0: their power overflows float32."""
    from seld_edge.audio import write_audio
    from seld_edge.cli import main

    audio = plane_wave_foa(1.0, 0.0, 0.0)
    audio[:, 100:110] = 3e38
    write_audio(tmp_path / "loud.wav", audio, 24000, subtype="FLOAT")
    result = cli.invoke(main, ["features", str(tmp_path / "loud.wav"), "--kind", "foa_logmel_iv",
                               "-o", str(tmp_path / "f.npy")])  # fmt: skip
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert f"{tmp_path / 'loud.wav'}: its features are not finite: the samples reach 3e+38" in result.output
    assert not (tmp_path / "f.npy").exists()


def test_only_wav_and_flac_are_read_whatever_the_file_is_called(cli, tmp_path):
    """OGG was read as a single file (a cut one silently shortened) but skipped inside folders."""
    import soundfile as sf

    from seld_edge.cli import main

    sf.write(tmp_path / "clip.ogg", plane_wave_foa(1.0, 0.0, 0.0).T, 24000, format="OGG")
    whole = (tmp_path / "clip.ogg").read_bytes()
    (tmp_path / "renamed.wav").write_bytes(whole[: len(whole) // 2])  # cut, and misnamed
    for name in ("clip.ogg", "renamed.wav"):
        result = cli.invoke(main, ["features", str(tmp_path / name), "--kind", "foa_logmel_iv",
                                   "-o", str(tmp_path / "f.npy")])  # fmt: skip
        assert result.exit_code == 2 and result.output.count("\n") == 1
        assert f"{name}: OGG audio is not read, only WAV and FLAC" in result.output


def test_a_cartesian_csv_among_the_references_is_refused(cli, tmp_path):
    """A 7-column row is the Cartesian prediction form; in a reference folder it was read as Cartesian."""
    from seld_edge.cli import main

    refs, preds = tmp_path / "refs", tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    (refs / "a.csv").write_text("3,1,0,0.0,1.0,0.0,2.0\n")
    (preds / "a.csv").write_text("3,1,0,0.0,1.0,0.0,2.0\n")
    result = cli.invoke(main, ["eval", "--ref", str(refs), "--pred", str(preds)])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "a.csv:1: malformed row" in result.output and "reference metadata is polar" in result.output
    result = cli.invoke(main, ["eval", "--ref", str(preds), "--pred", str(preds), "--json"])
    assert result.exit_code == 2, "the same file is refused as a reference whichever folder it sits in"


def test_export_help_says_what_strict_refuses(cli):
    from seld_edge.cli import main

    result = cli.invoke(main, ["export", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "finds an error (a graph TensorRT cannot build); warnings are printed and the file is written" in text
    assert "errors and warnings alike" not in text
