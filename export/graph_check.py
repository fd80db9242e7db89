"""What TensorRT's ONNX parser will reject or run badly, found before anyone reaches a Jetson.

TensorRT cannot be installed on the development machines (docs/deployment.md), so an exported graph is
checked here against the parser of the target TensorRT version. The rules for 10.3 (JetPack 6.1/6.2)
come from the onnx-tensorrt sources, not from memory:

- The op importers are those registered with DEFINE_BUILTIN_OP_IMPORTER in onnxOpImporters.cpp at
  onnx-tensorrt tag 10.1-GA; its docs/Changelog.md adds no op for 10.2 ("minor changes to op
  importers for GRU and Squeeze") or 10.3 ("tensor axes inputs for Slice"). Window ops come in 10.4,
  real STFT in 10.5, Attention in 10.14, DFT in 11.2. Opsets 9 to 20 are parsed (docs/operators.md).
- ModelImporter.cpp looks importers up by op_type alone, ignoring the domain; a node without one (and
  not a local function) goes to the plugin fallback: plugin name = op_type, version = attribute
  ``plugin_version`` (default "1"), namespace = attribute ``plugin_namespace``.
- Inputs that must be initializers or Constant outputs ("is_weights" in the importers): CumSum
  ``axis``, the ``axes`` of Pad (opset 18+) and of every Reduce* op and Squeeze; Unsqueeze ``axes``
  must be a build-time constant. Pad's ``pads`` may be a tensor.
- Loop and Scan: "Scan output length cannot be dynamic" (operators.md); RNN ops become ILoops, and a
  bidirectional one runs its two directions as sequential loops over time.
"""

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import onnx

from seld_edge.errors import SeldEdgeError

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    """One node (or graph-level property) that TensorRT will reject ("error") or handle badly ("warning")."""

    severity: Severity
    node: str
    op_type: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.node} ({self.op_type}): {self.message}"


@dataclass(frozen=True)
class ParserRules:
    """What one TensorRT version's ONNX parser imports natively; everything else goes to a plugin."""

    importers: frozenset[str]
    recommended_opsets: range  # the project's choice within what the parser accepts
    hints: dict[str, str]  # op_type -> why it is missing and what to do instead


# onnx-tensorrt 10.1-GA onnxOpImporters.cpp, unchanged in 10.2 and 10.3 (see the module docstring).
_IMPORTERS_10_3 = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
    Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DeformConv DepthToSpace
    DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor GRU Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample
    GroupNormalization HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LRN
    LSTM LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax Loop LpNormalization LpPool MatMul Max
    MaxPool Mean MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or PRelu Pad
    ParametricSoftplus Pow QuantizeLinear RNN RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range
    Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RoiAlign Round ScaledTanh Scan Scatter ScatterElements
    ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
    Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
    """.split()
)

PARSERS: dict[str, ParserRules] = {
    "10.3": ParserRules(
        importers=_IMPORTERS_10_3,
        recommended_opsets=range(18, 21),
        hints={
            "STFT": "real STFT arrives in TensorRT 10.5; compute features outside the graph (seld_edge.features)",
            "DFT": "DFT arrives in TensorRT 11.2; compute features outside the graph (seld_edge.features)",
            "Attention": "the opset-23 Attention op arrives in TensorRT 10.14; export at opset 18-20 so attention "
            "is written as MatMul/Softmax",
            "HannWindow": "window ops arrive in TensorRT 10.4; store the window as an initializer",
            "HammingWindow": "window ops arrive in TensorRT 10.4; store the window as an initializer",
            "BlackmanWindow": "window ops arrive in TensorRT 10.4; store the window as an initializer",
        },
    )
}

# op_type -> index of the input that the importer needs as weights (an initializer or a Constant).
_CONSTANT_INPUTS: dict[str, tuple[int, str]] = {
    "CumSum": (1, "axis"),
    "Pad": (3, "axes"),
    "Squeeze": (1, "axes"),
    "Unsqueeze": (1, "axes"),
    **{op: (1, "axes") for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                  "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
}  # fmt: skip
_RNN_OPS = ("GRU", "LSTM", "RNN")
_ONNX_DOMAINS = ("", "ai.onnx")


def check_for_tensorrt(model: onnx.ModelProto, version: str = "10.3") -> list[Finding]:
    """Everything in ``model`` that TensorRT ``version``'s ONNX parser rejects (errors) or runs slowly (warnings).

    Nodes without a native importer are errors unless they are meant for a plugin: a node carrying a
    ``plugin_version`` attribute is taken to be one (the project's custom ops always set it).
    """
    if version not in PARSERS:
        raise SeldEdgeError(f"no TensorRT parser rules for version {version}; known: {', '.join(PARSERS)}")
    rules = PARSERS[version]
    findings = _opset_findings(model, rules, version) + _input_findings(model)
    functions = {(f.domain, f.name) for f in model.functions}
    constants = {init.name for init in model.graph.initializer}
    nodes = list(_all_nodes(model))
    constants |= {out for node in nodes if node.op_type == "Constant" for out in node.output}
    for node in nodes:
        if (node.domain, node.op_type) in functions:
            continue  # imported as a local function; its body is checked node by node
        findings += _node_findings(node, rules, version, constants)
    return findings


def refuse_if_strict(findings: list[Finding], strict: bool, source: str) -> None:
    """With ``strict``, an error (something that breaks a TensorRT build) is a failure: nothing is written.

    Warnings (a bidirectional GRU becoming a slow ILoop, an unusual opset) do not stop a TensorRT
    build, so they are reported either way; without ``strict`` errors are only reported too, since
    ONNX Runtime runs such graphs fine.
    """
    errors = [f for f in findings if f.severity == "error"]
    if strict and errors:
        raise SeldEdgeError(
            f"{source}: --strict and the TensorRT check found {len(errors)} error(s) "
            f"(first: {errors[0].op_type} at {errors[0].node}); nothing written"
        )


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    """Nodes of the main graph, of local functions and of subgraphs (Loop/Scan/If bodies), in order."""
    pending = deque([*model.graph.node, *(node for function in model.functions for node in function.node)])
    while pending:
        node = pending.popleft()
        yield node
        for attr in node.attribute:
            for graph in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                pending.extend(graph.node)


def _opset_findings(model: onnx.ModelProto, rules: ParserRules, version: str) -> list[Finding]:
    opset = next((o.version for o in model.opset_import if o.domain in _ONNX_DOMAINS), None)
    if opset is None or opset in rules.recommended_opsets:
        return []
    wanted = f"{rules.recommended_opsets.start}-{rules.recommended_opsets.stop - 1}"
    return [Finding("warning", "graph", "opset", f"opset {opset}; opsets {wanted} are safest for TensorRT {version}")]


def _input_findings(model: onnx.ModelProto) -> list[Finding]:
    """The runtime binds float32 buffers to every input (features are float32 by definition)."""
    initializers = {init.name for init in model.graph.initializer}
    findings = []
    for value in model.graph.input:
        elem_type = value.type.tensor_type.elem_type
        if value.name not in initializers and elem_type != onnx.TensorProto.FLOAT:
            type_name = onnx.TensorProto.DataType.Name(elem_type)
            findings.append(Finding("error", value.name, "input", f"input is {type_name}; the runtime feeds float32"))
    return findings


def _node_findings(node: onnx.NodeProto, rules: ParserRules, version: str, constants: set[str]) -> list[Finding]:
    name, op = node.name or "(unnamed)", node.op_type
    is_plugin = any(attr.name == "plugin_version" for attr in node.attribute)
    if node.domain not in _ONNX_DOMAINS and op in rules.importers:
        message = f"domain {node.domain!r} is ignored by TensorRT {version}: it would import this node as ONNX {op}"
        return [Finding("error", name, op, message)]
    if op not in rules.importers:
        if is_plugin:
            return []
        if node.domain in _ONNX_DOMAINS:
            hint = rules.hints.get(op, "replace it or provide a TensorRT plugin")
            return [Finding("error", name, op, f"TensorRT {version} has no importer for {op}; {hint}")]
        message = (
            f"custom op in domain {node.domain!r} without a plugin_version attribute: TensorRT {version} will look "
            f"for a plugin named {op} version 1"
        )
        return [Finding("warning", name, op, message)]
    findings = []
    if op in _CONSTANT_INPUTS:
        index, what = _CONSTANT_INPUTS[op]
        if len(node.input) > index and node.input[index] and node.input[index] not in constants:
            findings.append(Finding("error", name, op, f"{what} input must be a constant for TensorRT {version}"))
    if op in ("Loop", "Scan"):
        findings.append(Finding("warning", name, op, f"TensorRT {version} needs a static output length for {op}"))
    if op in _RNN_OPS and _attribute(node, "direction") == "bidirectional":
        message = f"bidirectional {op} becomes two sequential ILoops over time in TensorRT {version} (slow)"
        findings.append(Finding("warning", name, op, message))
    return findings


def _attribute(node: onnx.NodeProto, name: str) -> object:
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return None
