"""Long steps are never silent: export announces its stages and parity --data counts its clips, on stderr,
while stdout keeps what other programs read (the results table, the --json report)."""

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from seld_edge.cli import main  # noqa: E402
from seld_edge.synth import generate_dataset  # noqa: E402
from tests.test_export import make_checkpoint  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "seld_edge" / "assets"


@pytest.mark.slow
def test_export_announces_each_stage_on_stderr(cli, tmp_path):
    make_checkpoint(tmp_path / "run" / "best", "seldnet")
    out = tmp_path / "m.onnx"
    result = cli.invoke(main, ["export", str(tmp_path / "run"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    print(result.stderr)
    stages = [line.split(":")[0] for line in result.stderr.splitlines() if line.startswith("[")]
    assert stages == ["[1/5] load", "[2/5] trace", "[3/5] optimise", "[4/5] check", "[5/5] write"]
    assert f"[5/5] write: {out}" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("format") and lines[1].startswith("onnx ")


@pytest.mark.slow
def test_parity_with_data_counts_its_clips_on_stderr(cli, tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, n_train=0, n_test=2, seconds=6.0, seed=5, progress=False)
    args = [str(ASSETS / "seldnet_synth"), str(ASSETS / "seldnet_synth.onnx"), "--data", str(data), "--json"]
    result = cli.invoke(main, ["parity", *args])
    assert result.exit_code == 0, result.output
    print(result.stderr)
    assert "parity: 100%" in result.stderr and "2/2" in result.stderr
    report = json.loads(result.stdout)  # stdout stays one JSON object
    assert report["delta_seld"] is not None and report["max_abs_error"] <= 1e-4
