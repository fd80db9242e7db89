"""The selective scan in exported graphs: the ``onnx`` flavour against PyTorch for any length, the
``plugin`` flavour's SelectiveScan node (contract, TensorRT check, and run in ONNX Runtime through a
numpy implementation of the node), for a single scan and for the whole FFMamba."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxruntime_extensions")

from torch.export import Dim  # noqa: E402

from export.graph_check import check_for_tensorrt  # noqa: E402
from export.selective_scan_onnx import MAX_SCAN_LENGTH, translation_table  # noqa: E402
from export.trt_build import tensorrt_available  # noqa: E402
from seld_edge.cli import main  # noqa: E402
from seld_edge.ops import selective_scan  # noqa: E402
from tests.selective_scan_node import numpy_selective_scan, session_with_numpy_scan  # noqa: E402
from tests.test_export import clip_frames, make_checkpoint  # noqa: E402


class OneScan(torch.nn.Module):
    """A scan shaped like an SS2D's (G = 4 directions), its B, C and delta computed from the input."""

    def __init__(self, dim: int = 16, d_state: int = 2, groups: int = 4, with_z: bool = False) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.A_log = torch.nn.Parameter(torch.rand(dim, d_state, generator=g))
        self.D = torch.nn.Parameter(torch.randn(dim, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(dim, generator=g) * 0.5)
        self.groups, self.d_state, self.with_z = groups, d_state, with_z

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        batch, _, length = u.shape
        bc = u[:, : 2 * self.groups * self.d_state].reshape(batch, 2, self.groups, self.d_state, length)
        z = torch.tanh(u) if self.with_z else None
        return selective_scan(u, u * 0.3, -torch.exp(self.A_log), bc[:, 0], bc[:, 1], self.D, z, self.bias, True)


def export(module: torch.nn.Module, flavour: str) -> onnx.ModelProto:
    dims = {"u": {0: Dim("batch"), 2: Dim("length", min=2, max=MAX_SCAN_LENGTH)}}
    program = torch.onnx.export(
        module.eval(), (torch.randn(2, 16, 50),), dynamo=True, dynamic_shapes=dims, external_data=False,
        custom_translation_table=translation_table(flavour), verbose=False,
    )  # fmt: skip
    return program.model_proto


def relative_error(got: np.ndarray, expected: torch.Tensor) -> float:
    return float(np.abs(got - expected.numpy()).max() / expected.abs().max())


@pytest.mark.parametrize("with_z", [False, True])
def test_onnx_flavour_matches_pytorch_at_any_length(with_z):
    module = OneScan(with_z=with_z)
    model = export(module, "onnx")
    ops = {node.op_type for node in model.graph.node}
    assert "Loop" not in ops and "Scan" not in ops and "SelectiveScan" not in ops
    assert not check_for_tensorrt(model), "Pad, Gather, ReduceSum all in TensorRT 10.3's accepted forms"
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    # Lengths around the chunk (8) and chunk-of-chunks (64) boundaries, a long one, and inputs scaled so
    # that delta = 0.3 u + bias reaches +-100, where exp overflows in fp32 (the softplus must not).
    for batch, length, scale in (
        (1, 1, 1),
        (2, 7, 1),
        (1, 8, 1),
        (1, 64, 1),
        (2, 65, 1),
        (1, 513, 1),
        (1, 5000, 1),
        (1, 50, 300),
    ):
        u = scale * torch.randn(batch, 16, length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            expected = module(u)
        (got,) = session.run(None, {"u": u.numpy()})
        error = relative_error(got, expected)
        print(f"onnx flavour, batch {batch}, L {length}, |u| ~ {scale}: max error / max |y| = {error:.1e}")
        assert got.shape == tuple(expected.shape) and error <= 1e-5


def test_plugin_flavour_is_one_node_per_scan_and_runs_through_the_numpy_node():
    module = OneScan()
    model = export(module, "plugin")
    (node,) = [n for n in model.graph.node if n.op_type == "SelectiveScan"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert node.domain == "seld_edge"
    assert attrs == {
        "plugin_version": b"1", "plugin_namespace": b"", "d_state": 2, "groups": 4, "delta_softplus": 1,
        "has_z": 0, "has_D": 1,
    }  # fmt: skip
    assert len(node.input) == 7  # u, delta, A, B, C, delta_bias, D_skip
    assert not check_for_tensorrt(model), "a node with plugin_version is meant for the plugin"
    session = session_with_numpy_scan(model)
    for length in (1, 37, 300):
        u = torch.randn(2, 16, length, generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            expected = module(u)
        (got,) = session.run(None, {"u": u.numpy()})
        error = relative_error(got, expected)
        print(f"plugin flavour through the numpy node, L {length}: max error / max |y| = {error:.1e}")
        assert error <= 1e-5


def test_the_numpy_node_follows_the_contract_with_z_and_without_skip():
    rng = np.random.default_rng(0)
    u, delta, z = (rng.standard_normal((2, 8, 30)).astype(np.float32) for _ in range(3))
    A = -np.exp(rng.standard_normal((8, 2))).astype(np.float32)
    B, C = (rng.standard_normal((2, 2, 2, 30)).astype(np.float32) for _ in range(2))
    bias = rng.standard_normal(8).astype(np.float32)
    got = numpy_selective_scan(u, delta, A, B, C, bias, None, z, d_state=2, groups=2, delta_softplus=1)
    expected = selective_scan(*map(torch.from_numpy, (u, delta, A, B, C)), z=torch.from_numpy(z),
                              delta_bias=torch.from_numpy(bias), delta_softplus=True, impl="reference")  # fmt: skip
    assert relative_error(got, expected) <= 1e-5


def test_ffmamba_exports_with_plugin_nodes_that_reproduce_pytorch(tmp_path, cli):
    """--trt takes the plugin flavour by default; without tensorrt it leaves a build_engine.sh that loads the plugin.
    On ffmamba_tiny: the same blocks and scans as ffmamba, at a fifth of the export time."""
    system, _ = make_checkpoint(tmp_path / "run" / "best", "ffmamba_tiny")
    model_path = tmp_path / "ffmamba_plugin.onnx"
    plugin = "/opt/seld/libseld_scan_plugin.so"
    args = ["--trt", "--plugin", plugin] if not tensorrt_available() else ["--scan", "plugin"]
    result = cli.invoke(main, ["export", str(tmp_path / "run"), "-o", str(model_path), *args])
    assert result.exit_code == 0, result.output
    if not tensorrt_available():
        script = (tmp_path / "build_engine.sh").read_text()
        assert f'PLUGIN="${{SELD_SCAN_PLUGIN:-{plugin}}}"' in script
        assert '--dynamicPlugins="$PLUGIN"' in script
        assert json.loads((tmp_path / "ffmamba_plugin.engine.json").read_text())["plugin"] == plugin
    model = onnx.load(model_path)
    scans = [n for n in model.graph.node if n.op_type == "SelectiveScan"]
    assert len(scans) == sum(system.model_args["depths"]), "one node per VSS block"
    # The onnx flavour writes delta's softplus; FFMamba has none outside its scans.
    assert {n.op_type for n in model.graph.node}.isdisjoint({"Softplus", "Loop"}), "no scan written in ONNX ops"
    assert not [f for f in check_for_tensorrt(model) if f.severity == "error"]
    frames = clip_frames("ffmamba_tiny", 1.0)
    features = np.random.default_rng(0).standard_normal((1, 7, frames, 128)).astype(np.float32)
    with torch.no_grad():
        expected = system(torch.from_numpy(features))
    got = dict(zip(system.output_names, session_with_numpy_scan(model).run(None, {"features": features}), strict=True))
    for name, ref in expected.items():
        error = float(np.abs(got[name] - ref.numpy()).max())
        print(f"ffmamba_tiny --scan plugin, {name}: max abs error {error:.1e}")
        assert error <= 1e-4


def test_unknown_scan_flavour_is_one_line_exit_2(tmp_path, cli):
    result = cli.invoke(main, ["export", str(tmp_path), "-o", str(tmp_path / "m.onnx"), "--scan", "cuda"])
    assert result.exit_code == 2 and "cuda" in result.output


def test_the_plugin_schema_types_slot_6_for_d_skip_or_an_fp16_z():
    """Present inputs follow one another, so with has_D = 0 the z input (u's type, float16 in an fp16 graph)
    sits in slot 6, D_skip's: the slot must take float16 as well as D_skip's float32."""
    from export.selective_scan_onnx import _plugin_schema

    schema = _plugin_schema()
    constraints = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    slot6 = schema.inputs[6].type_str
    assert constraints[slot6] == {"tensor(float)", "tensor(float16)"}
    assert constraints[schema.inputs[7].type_str] == constraints[schema.inputs[0].type_str]  # z is typed as u
    assert constraints[schema.inputs[2].type_str] == {"tensor(float)"}  # A stays float32
