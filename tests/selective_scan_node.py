"""A numpy implementation of the SelectiveScan node (export/plugins/selective_scan/README.md), bound
into ONNX Runtime with onnxruntime-extensions, so that a ``--scan plugin`` graph runs before any
TensorRT build: its wiring (input order, attributes, shapes) is then checked against PyTorch."""

from functools import cache

import numpy as np
import onnx

PYOP_DOMAIN = "ai.onnx.contrib"  # where onnxruntime-extensions looks up Python ops


def numpy_selective_scan(
    u: np.ndarray,
    delta: np.ndarray,
    A: np.ndarray,
    B: np.ndarray,
    C: np.ndarray,
    delta_bias: np.ndarray,
    D_skip: np.ndarray | None,
    z: np.ndarray | None,
    d_state: int,
    groups: int,
    delta_softplus: int,
) -> np.ndarray:
    """The README's semantics, written from it: a loop over time in float64, vectorised over the rest."""
    batch, dim, length = u.shape
    assert A.shape == (dim, d_state) and B.shape == (batch, groups, d_state, length) and C.shape == B.shape
    dt = delta.astype(np.float64) + delta_bias[:, None]
    if delta_softplus:
        dt = np.where(dt > 20.0, dt, np.log1p(np.exp(np.minimum(dt, 20.0))))
    channel_group = np.arange(dim) // (dim // groups)
    Bd = B[:, channel_group].astype(np.float64)  # (batch, D, N, L)
    Cd = C[:, channel_group].astype(np.float64)
    x = np.zeros((batch, dim, d_state))
    y = np.empty((batch, dim, length))
    for t in range(length):
        x = np.exp(dt[:, :, t, None] * A) * x + (dt[:, :, t] * u[:, :, t])[..., None] * Bd[..., t]
        y[:, :, t] = (x * Cd[..., t]).sum(-1)
    if D_skip is not None:
        y += D_skip[:, None] * u
    if z is not None:
        y *= z / (1.0 + np.exp(-z))
    return y.astype(u.dtype)


@cache
def _register() -> str:
    """Register the Python op once per process (7 inputs: u, delta, A, B, C, delta_bias, D_skip)."""
    from onnxruntime_extensions import PyCustomOpDef, get_library_path, onnx_op

    attrs = {name: PyCustomOpDef.dt_int64 for name in ("d_state", "groups", "delta_softplus", "has_z", "has_D")}
    attrs |= {"plugin_version": PyCustomOpDef.dt_string, "plugin_namespace": PyCustomOpDef.dt_string}

    @onnx_op(
        op_type="SelectiveScan", inputs=[PyCustomOpDef.dt_float] * 7, outputs=[PyCustomOpDef.dt_float], attrs=attrs
    )
    def selective_scan_node(u, delta, A, B, C, delta_bias, D_skip, **attributes):
        assert attributes["has_D"] == 1 and attributes["has_z"] == 0, "registered for the 7-input form"
        assert attributes["plugin_version"] == "1" and attributes["plugin_namespace"] == ""
        return numpy_selective_scan(
            u, delta, A, B, C, delta_bias, D_skip, None,
            attributes["d_state"], attributes["groups"], attributes["delta_softplus"],
        )  # fmt: skip

    return get_library_path()


def session_with_numpy_scan(model: onnx.ModelProto):
    """An ONNX Runtime session in which every SelectiveScan node runs numpy_selective_scan.

    The nodes move to onnxruntime-extensions' domain in a copy of the graph; nothing else changes.
    """
    import onnxruntime as ort

    library = _register()
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for node in model.graph.node:
        if node.op_type == "SelectiveScan":
            node.domain = PYOP_DOMAIN
    model.opset_import.append(onnx.helper.make_opsetid(PYOP_DOMAIN, 1))
    options = ort.SessionOptions()
    options.register_custom_ops_library(library)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
