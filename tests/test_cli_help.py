"""One command line: `seld-edge train` and `python -m training.fit` share one option definition, and every
command's --help shows defaults one way, names its output -o/--output, and says counts in good English."""

import subprocess
import sys
from pathlib import Path

import click
import pytest

from seld_edge.cli import main
from seld_edge.features import FEATURE_KINDS
from seld_edge.metrics import METRICS
from tests.conftest import plane_wave_foa
from tests.test_audio_and_csv import write_wav

OUTPUT_COMMANDS = ("synth", "features", "train", "predict", "compose", "export", "run", "plot")


def commands(group: click.Group = main, prefix: str = "") -> dict[str, click.Command]:
    found = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found |= commands(command, f"{prefix}{name} ")
        else:
            found[f"{prefix}{name}"] = command
    return found


def test_defaults_are_shown_by_click_and_never_written_into_the_help_text():
    for name, command in commands().items():
        for param in command.params:
            if not isinstance(param, click.Option) or param.is_flag or param.hidden:
                continue
            assert "default" not in (param.help or "").lower(), f"{name} {param.opts}: {param.help!r}"
            if param.to_info_dict()["default"] is not None and not param.multiple:
                assert param.show_default, f"{name} {param.opts}: default {param.default!r} not shown"
            assert param.help or param.required, f"{name} {param.opts} has no help"


def test_choices_with_their_defaults():
    options = {name: {p.name: p for p in c.params} for name, c in commands().items()}
    for name in ("features", "bench features"):
        kind = options[name]["kind"]
        assert isinstance(kind.type, click.Choice) and tuple(kind.type.choices) == tuple(FEATURE_KINDS)
        assert kind.default == "foa_logmel_iv" and kind.show_default
    for name in ("eval", "parity"):
        metric = options[name]["metric"]
        assert isinstance(metric.type, click.Choice) and tuple(metric.type.choices) == METRICS
        assert metric.default == "dcase2023" and metric.show_default


def test_every_output_is_named_o_or_output():
    every = commands()
    for name in OUTPUT_COMMANDS:
        opts = [p.opts for p in every[name].params if isinstance(p, click.Option) and "-o" in p.opts]
        assert len(opts) == 1 and opts[0][:2] == ["-o", "--output"], (name, opts)
    for name, command in every.items():
        other = [p.opts for p in command.params if any(o in ("--out", "--out-dir", "--output-dir") for o in p.opts)]
        assert all(o[:2] == ["-o", "--output"] for o in other), (name, other)


def test_train_help_lists_the_settings_and_the_model_cards_values(cli):
    result = cli.invoke(main, ["train", "--help"])
    assert result.exit_code == 0, result.output
    settings = result.output.split("Settings (KEY=VALUE")[1].splitlines()
    print("\n".join(settings[:8]))
    rows = {line.split()[0]: line.split()[1:] for line in settings[2:] if line.strip()}
    assert rows["batch_size"] == ["32"] and rows["optimizer"] == ["adam"] and rows["max_minutes"] == ["null"]
    assert "ffmamba," in result.output and "seldnet," in result.output  # the models
    result = cli.invoke(main, ["train", "--model", "ffmamba", "--help"])
    assert result.exit_code == 0, result.output
    settings = result.output.split("Settings (KEY=VALUE")[1].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in settings[2:] if line.strip()}
    assert settings[1].split() == ["setting", "default", "ffmamba"]
    assert rows["batch_size"] == ["32", "auto"] and rows["lr"] == ["0.001", "0.0003"]  # the card's recipe
    assert rows["model.num_classes"] == ["13"] and "augment.foa_rotation" in rows


def test_python_m_training_fit_is_the_train_command():
    from training.cli import train_command

    proc = subprocess.run([sys.executable, "-m", "training.fit", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: python -m training.fit [OPTIONS] [KEY=VALUE]...")
    assert "``" not in proc.stdout  # no reStructuredText markup
    # The command's own context settings (its -h): a bare Context would render "--help" alone.
    ctx = click.Context(train_command, info_name="python -m training.fit", **train_command.context_settings)
    assert proc.stdout.split("Options:")[1] == train_command.get_help(ctx).split("Options:")[1] + "\n"
    opts = {o for p in train_command.params for o in p.opts}
    assert {"--model", "--data", "-o", "--output", "--out", "--epochs", "--max-minutes", "--config", "--device",
            "--resume"} <= opts  # fmt: skip


def test_synth_takes_its_folder_as_argument_or_option(cli, tmp_path):
    result = cli.invoke(main, ["synth", "-o", str(tmp_path / "a"), "--train", "0", "--test", "1", "--seconds", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 1 scene (foa) to {tmp_path / 'a'}"
    assert cli.invoke(main, ["synth", "--train", "0"]).exit_code == 2
    assert cli.invoke(main, ["synth", str(tmp_path / "b"), "-o", str(tmp_path / "c")]).exit_code == 2


def test_one_csv_file_is_singular_and_predict_labels_its_own_progress(cli, tmp_path):
    from seld_edge.benchmark import ASSETS

    wav = write_wav(tmp_path / "clip.wav", plane_wave_foa(2.0, 30.0, 0.0))
    result = cli.invoke(main, ["run", str(ASSETS / "seldnet_synth.onnx"), str(wav), "-o", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith(f"wrote 1 CSV file to {tmp_path / 'run'}")
    assert "run: 100%" in result.stderr
    pytest.importorskip("torch")
    result = cli.invoke(main, ["predict", str(ASSETS / "seldnet_synth"), str(wav), "-o", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 1 CSV file to {tmp_path / 'pred'}"
    assert "predict: 100%" in result.stderr and "run:" not in result.stderr


def test_the_install_is_quiet_about_the_license():
    """setuptools (>= 77) warns on every install about a TOML-table license; the SPDX string form is quiet."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]
