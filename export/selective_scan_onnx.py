"""The selective scan in an exported graph, in two flavours (``seld-edge export --scan onnx|plugin``).

While exporting, ``seld_edge.ops.selective_scan`` records one ``seld_edge::selective_scan`` node;
torch's ONNX exporter hands it to one of the functions here (through ``custom_translation_table``):

- ``onnx``: :func:`chunked_scan` writes the chunked form of seld_edge/ops/selective_scan.py in
  standard ONNX ops that ONNX Runtime and TensorRT 10.3's parser both take: ReduceSum over a
  constant axis, Gather of constant indices, Pad/Slice/Expand with computed sizes, no Loop. The
  whole sequence is one block; the chunk's steps are unrolled (CHUNK_SIZE of them, in each pass).
  The state is carried across chunks as in ``_linear_scan`` for CHUNK_LEVELS levels, but where
  PyTorch steps through the last few rows the graph, whose length is dynamic, takes a fixed number
  of doubling steps that covers MAX_SCAN_LENGTH, so one graph takes any length up to it.
- ``plugin``: :func:`plugin_node` writes one ``SelectiveScan`` node, the contract in
  export/plugins/selective_scan/README.md that the TensorRT plugin implements.

Building the ONNX directly, instead of letting torch.export trace the chunked form, keeps an FFMamba
export at seconds instead of minutes: tracing hundreds of ops per scan with a symbolic length spent
its time in sympy.
"""

from collections.abc import Callable

import onnx
import onnxscript
from onnxscript import opset18 as op

from seld_edge.ops.selective_scan import CHUNK_SIZE

# Levels of chunks (of chunks) that carry the state across chunks before the doubling steps on top.
CHUNK_LEVELS = 2
# The longest scan one graph handles, in positions (an FFMamba first stage scans T * 32 of them: 60 s
# is 153,600). It fixes the number of doubling steps written into the graph, log2(2**20 / 16**2) = 12.
MAX_SCAN_LENGTH = 2**20
PLUGIN_DOMAIN = "seld_edge"
PLUGIN_OP = "SelectiveScan"
SCAN_FLAVOURS = ("onnx", "plugin")


def _plugin_schema() -> onnx.defs.OpSchema:
    """The SelectiveScan node's ONNX schema, as export/plugins/selective_scan/README.md specifies it."""
    param, attr = onnx.defs.OpSchema.FormalParameter, onnx.defs.OpSchema.Attribute
    ints = {name: onnx.defs.OpSchema.AttrType.INT for name in ("d_state", "groups", "delta_softplus", "has_z", "has_D")}
    return onnx.defs.OpSchema(
        PLUGIN_OP,
        PLUGIN_DOMAIN,
        1,
        doc="Mamba's selective scan; see export/plugins/selective_scan/README.md.",
        inputs=[
            *(param(name, "T") for name in ("u", "delta")),
            param("A", "F"),
            *(param(name, "T") for name in ("B", "C")),
            param("delta_bias", "F"),
            # Present inputs follow one another: z takes index 6 when has_D = 0 (names are cosmetic), so
            # slot 6 is typed to take either: D_skip (float32) or z (u's type, float16 in an fp16 graph).
            param("D_skip", "O", param_option=onnx.defs.OpSchema.FormalParameterOption.Optional),
            param("z", "T", param_option=onnx.defs.OpSchema.FormalParameterOption.Optional),
        ],
        outputs=[param("y", "T")],
        type_constraints=[
            ("T", ["tensor(float)", "tensor(float16)"], "u, delta, B, C, z and y"),
            ("F", ["tensor(float)"], "A, delta_bias"),
            ("O", ["tensor(float)", "tensor(float16)"], "input 6: D_skip (float32) or, when has_D = 0, z (as u)"),
        ],
        attributes=[
            attr("plugin_version", onnx.defs.OpSchema.AttrType.STRING, 'TensorRT plugin version, "1"'),
            attr("plugin_namespace", onnx.defs.OpSchema.AttrType.STRING, 'TensorRT plugin namespace, ""'),
            *(attr(name, kind, "") for name, kind in ints.items()),
        ],
    )


_plugin_op = onnxscript.values.Op(onnxscript.values.Opset(PLUGIN_DOMAIN, 1), PLUGIN_OP, _plugin_schema())


def _ints(*values: int) -> onnxscript.ir.Value:
    return op.Constant(value_ints=list(values))


def _shift_in(x: onnxscript.ir.Value, steps: int, fill: float) -> onnxscript.ir.Value:
    """x moved ``steps`` places later along axis 0, the first rows ``fill``; any steps, even > length."""
    length = op.Shape(x, start=0, end=1)
    steps_in = op.Min(_ints(steps), length)
    head = op.Expand(op.Constant(value_float=fill), op.Concat(steps_in, op.Shape(x, start=1), axis=0))
    tail = op.Slice(x, _ints(0), op.Sub(length, steps_in), _ints(0))
    return op.Concat(head, tail, axis=0)


def _doubling_scan(a: onnxscript.ir.Value, b: onnxscript.ir.Value, max_length: int) -> onnxscript.ir.Value:
    """All x_t of x_t = a_t x_(t-1) + b_t along axis 0 from a zero state, in steps covering ``max_length``.

    After step j every (a_t, b_t) holds the composition of the last 2^j steps ending at t (Hillis and
    Steele), so no product of more than 2^j decays is ever formed and nothing overflows.
    """
    n_steps = max(max_length - 1, 0).bit_length()
    for j in range(n_steps):
        b = op.Add(b, op.Mul(a, _shift_in(b, 2**j, 0.0)))
        if j < n_steps - 1:
            a = op.Mul(a, _shift_in(a, 2**j, 1.0))
    return b


def _softplus(x: onnxscript.ir.Value) -> onnxscript.ir.Value:
    """softplus(x) = max(x, 0) + log(1 + exp(-|x|)), with |x| = 2 max(x, 0) - x: nothing overflows.

    ONNX Runtime's Softplus kernel took 34 ms of a 159 ms scan at FFMamba's first stage (one core);
    these elementwise ops, which it vectorizes, are each a few ms.
    """
    positive = op.Relu(x)
    minus_abs = op.Sub(x, op.Add(positive, positive))
    return op.Add(positive, op.Log(op.Add(op.Exp(minus_abs), op.Constant(value_float=1.0))))


def _padding_to_chunks(length: onnxscript.ir.Value) -> onnxscript.ir.Value:
    """How many steps make ``length`` a whole number of chunks: (K - length % K) % K."""
    K = _ints(CHUNK_SIZE)
    return op.Mod(op.Sub(K, op.Mod(length, K)), K)


def _step(x: onnxscript.ir.Value, k: int, axis: int) -> onnxscript.ir.Value:
    """Slice k of axis ``axis``, that axis removed."""
    return op.Gather(x, op.Constant(value_int=k), axis=axis)


def _recurrence(
    a: list[onnxscript.ir.Value], b: list[onnxscript.ir.Value], entering: onnxscript.ir.Value | None = None
) -> list[onnxscript.ir.Value]:
    """States of one chunk, s_k = a_k s_(k-1) + b_k (unrolled), from ``entering`` or a zero state."""
    states = [b[0] if entering is None else op.Add(op.Mul(a[0], entering), b[0])]
    for a_k, b_k in zip(a[1:], b[1:], strict=True):
        states.append(op.Add(op.Mul(a_k, states[-1]), b_k))
    return states


def _chunked_linear_scan(
    a: onnxscript.ir.Value, b: onnxscript.ir.Value, levels: int, max_length: int
) -> onnxscript.ir.Value:
    """x_t = a_t x_(t-1) + b_t along axis 0 from a zero state, as ``_linear_scan`` chunks it, for ``levels`` levels."""
    if levels == 0:
        return _doubling_scan(a, b, max_length)
    length = op.Shape(a, start=0, end=1)
    rest = op.Shape(a, start=1)
    pads = op.Concat(
        _ints(0, 0, 0, 0, 0), _padding_to_chunks(length), _ints(0, 0, 0, 0), axis=0
    )  # rank 5: pad the end of axis 0
    chunked_shape = op.Concat(_ints(-1, CHUNK_SIZE), rest, axis=0)
    a = op.Reshape(op.Pad(a, pads, op.Constant(value_float=1.0)), chunked_shape)  # (n, K, ...)
    b = op.Reshape(op.Pad(b, pads, op.Constant(value_float=0.0)), chunked_shape)
    a = [_step(a, k, 1) for k in range(CHUNK_SIZE)]
    states = _recurrence(a, [_step(b, k, 1) for k in range(CHUNK_SIZE)])
    decays = [a[0]]
    for a_k in a[1:]:
        decays.append(op.Mul(a_k, decays[-1]))
    ends = _chunked_linear_scan(decays[-1], states[-1], levels - 1, -(-max_length // CHUNK_SIZE))
    entering = _shift_in(ends, 1, 0.0)
    x = op.Concat(
        *[op.Unsqueeze(op.Add(s, op.Mul(d, entering)), _ints(1)) for s, d in zip(states, decays, strict=True)], axis=1
    )
    x = op.Reshape(x, op.Concat(_ints(-1), rest, axis=0))
    return op.Slice(x, _ints(0), length, _ints(0))


def chunked_scan(
    u: onnxscript.ir.Value,
    delta: onnxscript.ir.Value,
    A: onnxscript.ir.Value,
    B: onnxscript.ir.Value,
    C: onnxscript.ir.Value,
    D: onnxscript.ir.Value | None,
    z: onnxscript.ir.Value | None,
    delta_bias: onnxscript.ir.Value | None,
    delta_softplus: bool,
) -> onnxscript.ir.Value:
    """The ``onnx`` flavour: selective_scan_chunked's computation as one block (``_scan_block``), same layout.

    fp32 throughout (the exported graphs are fp32). u, delta, z (batch, D, L); A (D, N); B, C
    (batch, G, N, L); D, delta_bias (D,). D, N and G are static, batch and L dynamic.
    """
    dim, d_state = A.shape
    groups = B.shape[1]
    per_group = dim // groups
    K = CHUNK_SIZE
    if delta_bias is not None:
        delta = op.Add(delta, op.Unsqueeze(delta_bias, _ints(1)))
    if delta_softplus:
        delta = _softplus(delta)
    batch = op.Shape(u, start=0, end=1)
    length = op.Shape(u, start=2, end=3)
    pad = _padding_to_chunks(length)

    def chunked_time_major(t: onnxscript.ir.Value, inner: int) -> onnxscript.ir.Value:
        """(batch, D | G*N, L) or (batch, G, N, L) -> (n, K, batch, G, inner), zero-padded to whole chunks.

        One 2-D Transpose: ONNX Runtime took 46 ms for the five 5-D Transposes that did this before.
        """
        t = op.Transpose(op.Reshape(t, op.Concat(_ints(-1), length, axis=0)), perm=[1, 0])  # (L, batch*G*inner)
        t = op.Pad(t, op.Concat(_ints(0, 0), pad, _ints(0), axis=0))
        return op.Reshape(t, op.Concat(_ints(-1, K), batch, _ints(groups, inner), axis=0))

    # The state is laid out (..., G, N, H), as in selective_scan_chunked; one block of the whole sequence.
    dt = op.Unsqueeze(chunked_time_major(delta, per_group), _ints(4))  # (n, K, batch, G, 1, H)
    du = op.Mul(dt, op.Unsqueeze(chunked_time_major(u, per_group), _ints(4)))
    B_t = op.Unsqueeze(chunked_time_major(B, d_state), _ints(5))  # (n, K, batch, G, N, 1)
    C_t = op.Unsqueeze(chunked_time_major(C, d_state), _ints(5))
    A_g = op.Transpose(op.Reshape(A, _ints(groups, per_group, d_state)), perm=[0, 2, 1])  # (G, N, H)
    # Each step's decay and drive, (n, batch, G, N, H), used by both passes of _scan_block.
    decay = [op.Exp(op.Mul(_step(dt, k, 1), A_g)) for k in range(K)]
    drive = [op.Mul(_step(du, k, 1), _step(B_t, k, 1)) for k in range(K)]
    end = _recurrence(decay, drive)[-1]
    chunk_decay = op.Exp(op.Mul(op.ReduceSum(dt, _ints(1), keepdims=0), A_g))
    ends = _chunked_linear_scan(chunk_decay, end, CHUNK_LEVELS - 1, -(-MAX_SCAN_LENGTH // K))
    states = _recurrence(decay, drive, _shift_in(ends, 1, 0.0))
    ys = [op.ReduceSum(op.Mul(s, _step(C_t, k, 1)), _ints(-2), keepdims=0) for k, s in enumerate(states)]
    y = op.Concat(*[op.Unsqueeze(y_k, _ints(1)) for y_k in ys], axis=1)  # (n, K, batch, G, H)
    y = op.Slice(op.Reshape(y, op.Concat(_ints(-1), batch, _ints(dim), axis=0)), _ints(0), length, _ints(0))
    y = op.Transpose(op.Reshape(y, op.Concat(length, _ints(-1), axis=0)), perm=[1, 0])  # (batch*D, L)
    y = op.Reshape(y, op.Concat(batch, _ints(dim, -1), axis=0))
    if D is not None:
        y = op.Add(y, op.Mul(u, op.Unsqueeze(D, _ints(1))))
    if z is not None:
        y = op.Mul(y, op.Mul(z, op.Sigmoid(z)))
    return y


def plugin_node(
    u: onnxscript.ir.Value,
    delta: onnxscript.ir.Value,
    A: onnxscript.ir.Value,
    B: onnxscript.ir.Value,
    C: onnxscript.ir.Value,
    D: onnxscript.ir.Value | None,
    z: onnxscript.ir.Value | None,
    delta_bias: onnxscript.ir.Value | None,
    delta_softplus: bool,
) -> onnxscript.ir.Value:
    """The ``plugin`` flavour: one SelectiveScan node, inputs u, delta, A, B, C, delta_bias, [D_skip], [z]."""
    if delta_bias is None:
        delta_bias = op.ConstantOfShape(op.Shape(A, start=0, end=1))  # float zeros
    optional = [t for t in (D, z) if t is not None]
    return _plugin_op(
        u, delta, A, B, C, delta_bias, *optional,
        plugin_version="1", plugin_namespace="", d_state=A.shape[1], groups=B.shape[1],
        delta_softplus=int(delta_softplus), has_z=int(z is not None), has_D=int(D is not None),
    )  # fmt: skip


def translation_table(flavour: str) -> dict[object, Callable[..., onnxscript.ir.Value]]:
    """``custom_translation_table`` for torch.onnx.export: the scan node in the given flavour."""
    import torch

    import seld_edge.ops.selective_scan  # noqa: F401  (registers torch.ops.seld_edge.selective_scan)

    return {torch.ops.seld_edge.selective_scan.default: chunked_scan if flavour == "onnx" else plugin_node}
