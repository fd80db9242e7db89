"""The numpy core must run where torch cannot be imported (design: the Jetson runtime is torch-free)."""

import subprocess
import sys
import textwrap

from tests.conftest import BLOCK_TORCH

SCRIPT = BLOCK_TORCH + textwrap.dedent(
    """
    import numpy as np
    from click.testing import CliRunner
    from seld_edge.cli import main
    from seld_edge.features import compute_features, feature_config
    from seld_edge.formats import get_output_format, read_events
    from seld_edge.formats.accdoa import adpit_to_multi_accdoa
    from seld_edge.metrics import evaluate
    from seld_edge.postprocess import PostProcessing

    out = sys.argv[1]
    runner = CliRunner()
    result = runner.invoke(main, ["synth", out, "--train", "0", "--test", "1", "--seconds", "3"])
    assert result.exit_code == 0, result.output
    wav = next(__import__("pathlib").Path(out).rglob("*.wav"))
    result = runner.invoke(main, ["features", str(wav), "--kind", "foa_logmel_iv", "-o", out + "/f.npy"])
    assert result.exit_code == 0, result.output
    assert np.load(out + "/f.npy").shape == (7, 150, 64)
    csv = next(__import__("pathlib").Path(out).rglob("*.csv"))
    events = read_events(csv, reference=True)
    fmt = get_output_format("multi_accdoa")
    outputs = {"accdoa": adpit_to_multi_accdoa(fmt.encode(events, 30, 13)["adpit"])}
    decoded = fmt.decode(outputs, 13, PostProcessing())
    assert evaluate([(events, decoded)])["ER"] == 0.0
    result = runner.invoke(main, ["bench", "features", "--seconds", "1"])
    assert "torch   (not installed" in result.output, result.output
    assert "torch" not in {m.split(".")[0] for m, v in sys.modules.items() if v is not None}
    print("torch-free ok")
    """
)


def test_numpy_core_runs_with_torch_unimportable(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "torch-free ok" in proc.stdout


def test_commands_that_need_torch_say_what_to_install(tmp_path):
    script = BLOCK_TORCH + textwrap.dedent(
        """
        import importlib.util
        real_find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
        from click.testing import CliRunner
        from seld_edge.cli import main

        for args in (["models"], ["predict", "ckpt", "audio", "-o", "out"], ["export", "ckpt", "-o", "m.onnx"],
                     ["parity", "ckpt", "m.onnx"]):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 2, (args, result.output)
            expected = "error: this command needs torch: pip install torch==2.13.0"
            assert result.output.strip().startswith(expected), result.output
        print("messages ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "messages ok" in proc.stdout
