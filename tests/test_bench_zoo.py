"""`seld-edge bench zoo`: every column of a row filled for models that work, a row with the failure for
one that does not, the reports written, and the roofline arithmetic by hand."""

import csv
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("matplotlib")

from export.bench_zoo import DEVICES, ideal_ms, zoo_models  # noqa: E402
from seld_edge.cli import main  # noqa: E402
from seld_edge.models import ModelCard, register_model  # noqa: E402
from seld_edge.synth import generate_dataset  # noqa: E402
from tests.toy_models import ToyNet  # noqa: E402


class Unexportable(ToyNet):
    """A toy that runs in PyTorch but refuses to be traced for export, as a model with an op the exporter
    cannot handle does."""

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if torch.compiler.is_compiling():
            raise RuntimeError("this toy cannot be exported")
        return super().forward(features)


DEFAULTS = {
    "num_classes": 13,
    "feature_kind": "foa_logmel_iv",
    "label_rate_hz": 10.0,
    "heads": [["sigmoid"], ["tanh"] * 3],
    "hidden": 16,
}


@pytest.fixture(scope="module", autouse=True)
def unexportable_toy(toys):
    """Registered beside the other toys, and removed with them at the end of the module."""
    register_model("toy_unexportable", ModelCard("foa_logmel_iv", "sed_doa", defaults=DEFAULTS))(Unexportable)


def test_roofline_is_the_slower_of_compute_and_memory_by_hand():
    # 1 GMAC = 2 GFLOP at 17 TFLOPS: 0.1176 ms; 1 M parameters + 4 M activations in FP16 = 10 MB at 102 GB/s:
    # 0.098 ms. Compute bound on the Orin Nano Super.
    ideal = ideal_ms(macs=10**9, parameters=10**6, activations=4 * 10**6)
    assert ideal["Orin Nano Super"] == pytest.approx(2e9 / 17e12 * 1e3)
    # 40 M activations: 82 MB at 102 GB/s is 0.80 ms, memory bound.
    assert ideal_ms(10**9, 10**6, 40 * 10**6)["Orin Nano Super"] == pytest.approx(82e6 / 102e9 * 1e3)
    assert set(ideal) == set(DEVICES)


def test_the_zoo_skips_halves_of_a_composite():
    names = zoo_models()
    assert "m2m_ast" in names and "m2m_ast_sed" not in names and "seldnet" in names


def test_two_models_fill_every_column_and_a_failing_one_gets_its_row(tmp_path, cli):
    data = tmp_path / "data"
    generate_dataset(data, n_train=0, n_test=1, seconds=6.0, seed=21, progress=False)
    out = tmp_path / "zoo"
    args = ["bench", "zoo", "--models", "toy_sed_doa_5hz,toy_accdoa_20hz", "--models", "toy_unexportable",
            "--seconds", "5", "--rounds", "2", "--data", str(data), "-o", str(out)]  # fmt: skip
    result = cli.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["zoo.csv", "zoo.json", "zoo.md", "zoo.png"]
    rows = {row["model"]: row for row in csv.DictReader((out / "zoo.csv").open())}
    for name in ("toy_sed_doa_5hz", "toy_accdoa_20hz"):
        row = rows[name]
        empty = [key for key, value in row.items() if value == ""]
        print(name, row)
        assert row["status"] == "ok" and not empty, empty
        assert float(row["runtime_p50_ms"]) <= float(row["runtime_p95_ms"])
        assert float(row["parity_max_abs"]) <= 1e-4
        assert set(json.loads(row["scores"])) == {"ER", "F", "LE", "LR", "SELD"}
    broken = rows["toy_unexportable"]
    assert broken["status"].startswith("failed at export:"), broken["status"]
    assert broken["parameters"] and broken["runtime_p50_ms"] == "", "the row stops where the model failed"
    table = (out / "zoo.md").read_text()
    assert "| toy_unexportable | failed at export:" in table and "Orin Nano Super" in table
    assert "1 of 3 models failed: toy_unexportable" in result.output
