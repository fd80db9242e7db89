"""The selective scan: the reference against a hand-computed case, the chunked form against the
reference (errors relative to max |y_ref|), its gradients, shape checks and the CUDA dispatch."""

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from seld_edge.errors import SeldEdgeError
from seld_edge.ops import selective_scan
from seld_edge.ops.selective_scan import (
    CPU_BLOCK_SIZE,
    _mamba_selective_scan_fn,
    selective_scan_chunked,
    selective_scan_reference,
)

# The module itself: ``seld_edge.ops.selective_scan`` the attribute is the function of the same name.
scan_module = importlib.import_module("seld_edge.ops.selective_scan")


def make_inputs(
    batch: int = 2,
    dim: int = 8,
    d_state: int = 4,
    groups: int = 1,
    length: int = 100,
    dtype: torch.dtype = torch.float32,
    delta_scale: float = 1.0,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Random inputs shaped like a Mamba block's: A = -exp(.) < 0, delta >= 0 around delta_scale."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype)

    return {
        "u": randn(batch, dim, length),
        "delta": F.softplus(randn(batch, dim, length)) * delta_scale,
        "A": -torch.exp(randn(dim, d_state)),
        "B": randn(batch, groups, d_state, length),
        "C": randn(batch, groups, d_state, length),
        "D": randn(dim),
        "z": randn(batch, dim, length),
        "delta_bias": randn(dim) * 0.1,
    }


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    """Max absolute difference over max |ref|."""
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def test_reference_matches_a_hand_computed_scan() -> None:
    u, delta, a, b, c, skip = 2.0, 0.5, -1.0, 3.0, 0.25, 0.1
    x1 = delta * b * u
    x2 = math.exp(delta * a) * x1 + delta * b * u
    y = selective_scan(
        torch.full((1, 1, 2), u),
        torch.full((1, 1, 2), delta),
        torch.full((1, 1), a),
        torch.full((1, 1, 1, 2), b),
        torch.full((1, 1, 1, 2), c),
        D=torch.full((1,), skip),
        impl="reference",
    )
    torch.testing.assert_close(y, torch.tensor([[[c * x1 + skip * u, c * x2 + skip * u]]]))


@pytest.mark.parametrize(
    ("groups", "length", "chunk", "block", "options"),
    [
        (1, 100, 32, None, {}),
        (4, 100, 32, 100, {"D", "z", "delta_bias"}),  # one block, as on a GPU
        (4, 64, 32, None, {"D", "delta_bias", "softplus"}),
        (1, 77, 16, 20, {"z", "softplus"}),  # blocks rounded up to whole chunks: 32, 32, 16 (13 + padding)
        (4, 100, 4, 4, {"D", "z", "delta_bias", "softplus"}),  # a block per chunk
        (4, 7, 32, None, {"D", "z", "delta_bias", "softplus"}),
    ],
)
def test_chunked_matches_reference(groups: int, length: int, chunk: int, block: int | None, options: set[str]) -> None:
    inputs = make_inputs(groups=groups, length=length)
    kwargs = {k: inputs.pop(k) for k in ("D", "z", "delta_bias")}
    kwargs = {k: v for k, v in kwargs.items() if k in options}
    softplus = "softplus" in options
    y_ref, x_ref = selective_scan(**inputs, **kwargs, delta_softplus=softplus, return_last_state=True, impl="reference")
    y, x = selective_scan_chunked(
        **inputs, **kwargs, delta_softplus=softplus, return_last_state=True, chunk_size=chunk, block_size=block
    )
    assert y.dtype == torch.float32 and x.shape == (2, 8, 4) and x.dtype == torch.float32
    assert rel_err(y, y_ref) <= 1e-5
    assert rel_err(x, x_ref) <= 1e-5


@pytest.mark.parametrize(("length", "block"), [(100, None), (100, 100), (77, 40), (3, None)])
def test_chunk_ends_carried_as_chunks_of_chunks_match_reference(
    monkeypatch: pytest.MonkeyPatch, length: int, block: int | None
) -> None:
    """Past SEQUENTIAL_STEPS chunk ends the carry chunks them again: with it at 2, 100 steps in chunks
    of 4 carry 25 chunk ends through 7 and 2 rows, and a block after the first enters with a state."""
    monkeypatch.setattr(scan_module, "SEQUENTIAL_STEPS", 2)
    inputs = make_inputs(groups=2, length=length, delta_scale=0.05)  # slow decay: states matter far ahead
    y_ref, x_ref = selective_scan(**inputs, delta_softplus=True, return_last_state=True, impl="reference")
    y, x = selective_scan_chunked(**inputs, delta_softplus=True, return_last_state=True, chunk_size=4, block_size=block)
    assert rel_err(y, y_ref) <= 1e-5
    assert rel_err(x, x_ref) <= 1e-5


def test_chunked_is_exact_on_long_sequences_where_exp_of_cumsum_overflows() -> None:
    inputs = make_inputs(batch=1, dim=8, d_state=4, groups=4, length=8192, delta_scale=2.0)
    cumulative = torch.cumsum(inputs["delta"][..., None] * inputs["A"][:, None, :], dim=2)
    assert torch.isinf(torch.exp(-cumulative)).any()  # the factored form exp(S_t) exp(-S_s) would fail here
    y_ref = selective_scan(**inputs, delta_softplus=True, impl="reference")
    y = selective_scan(**inputs, delta_softplus=True, impl="chunked")
    assert torch.isfinite(y).all()
    assert rel_err(y, y_ref) <= 1e-5


@pytest.mark.parametrize(("dtype", "bound"), [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)])
def test_half_inputs_keep_an_fp32_state(dtype: torch.dtype, bound: float) -> None:
    inputs = make_inputs(groups=4, length=300, dtype=dtype)
    y_ref, x_ref = selective_scan(
        **{k: v.float() for k, v in inputs.items()}, delta_softplus=True, return_last_state=True, impl="reference"
    )
    y, x = selective_scan(**inputs, delta_softplus=True, return_last_state=True, impl="chunked")
    assert y.dtype == dtype and x.dtype == torch.float32
    # Only the output is rounded to the input dtype: the state matches the fp32 run closely.
    assert rel_err(x, x_ref) <= 1e-5
    assert rel_err(y, y_ref) <= bound


@pytest.mark.parametrize(
    ("sequential_steps", "block"),
    [
        (64, 8),  # three blocks, the state carried between them
        (2, None),  # one block (a CPU training block holds up to 128 steps), its 10 chunk ends chunked again
    ],
)
def test_chunked_gradients_pass_gradcheck(
    monkeypatch: pytest.MonkeyPatch, sequential_steps: int, block: int | None
) -> None:
    monkeypatch.setattr(scan_module, "SEQUENTIAL_STEPS", sequential_steps)
    inputs = make_inputs(batch=1, dim=4, d_state=3, groups=2, length=20, dtype=torch.float64)
    names = list(inputs)
    leaves = [inputs[k].detach().requires_grad_() for k in names]

    def scan(*tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(zip(names, tensors, strict=True))
        return selective_scan_chunked(**kw, delta_softplus=True, return_last_state=True, chunk_size=2, block_size=block)

    assert torch.autograd.gradcheck(scan, leaves)


@pytest.mark.parametrize(
    ("groups", "length", "block", "options"),
    [
        (1, 100, None, set()),
        (4, 100, 8, {"D", "z", "delta_bias", "softplus"}),  # 13 blocks, the last one short
        (2, 77, 20, {"z", "softplus", "last"}),  # the loss reads the last state too
        (4, 7, None, {"D", "softplus", "last"}),
    ],
)
def test_training_gradients_match_the_reference(groups: int, length: int, block: int | None, options: set[str]) -> None:
    """The backward pass of the chunked form (states recomputed, adjoints scanned backwards in time)
    against autograd through the reference loop, fp32, every input."""
    inputs = make_inputs(groups=groups, length=length)
    names = ["u", "delta", "A", "B", "C", *(k for k in ("D", "z", "delta_bias") if k in options)]

    def gradients(scan, **kwargs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        leaves = {k: inputs[k].detach().requires_grad_() for k in names}
        y, x = scan(**leaves, delta_softplus="softplus" in options, return_last_state=True, **kwargs)
        g = torch.Generator().manual_seed(1)
        weights_y, weights_x = torch.randn(y.shape, generator=g), torch.randn(x.shape, generator=g)
        loss = (y * weights_y).sum() + ((x * weights_x).sum() if "last" in options else 0)
        loss.backward()
        return y.detach(), {k: v.grad for k, v in leaves.items()}

    y_ref, grads_ref = gradients(selective_scan_reference)
    y, grads = gradients(selective_scan_chunked, chunk_size=4, block_size=block)
    errors = {k: rel_err(grads[k], grads_ref[k]) for k in names}
    print(f"G {groups} L {length} block {block} {sorted(options)}: relative gradient errors", errors)
    assert rel_err(y, y_ref) <= 1e-5
    assert max(errors.values()) <= 1e-5


def test_training_keeps_only_the_inputs_for_the_backward_pass() -> None:
    """What autograd holds after the forward pass: about the inputs (1.8 MB here, for 1.25 MB of them),
    where recording the chunked steps held tensors of batch x D x N x L values (6.8 MB)."""
    inputs = {k: v.requires_grad_() for k, v in make_inputs(batch=2, dim=16, d_state=4, groups=4, length=2048).items()}
    held: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        held[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = selective_scan_chunked(**inputs, delta_softplus=True)
    kept, given = sum(held.values()), sum(inputs[k].nbytes for k in ("u", "delta", "B", "C", "z"))
    print(f"held for backward: {kept / 2**20:.2f} MB; inputs u, delta, B, C, z: {given / 2**20:.2f} MB")
    assert kept <= 2 * given
    y.sum().backward()  # and the backward pass runs from what was kept


def test_cpu_blocks_give_the_one_block_result() -> None:
    """The CPU's blocks of time only reorder the work: the state carried between them is exact."""
    inputs = make_inputs(batch=1, dim=16, groups=4, length=3 * CPU_BLOCK_SIZE + 5)
    blocked = selective_scan_chunked(**inputs, delta_softplus=True)
    whole = selective_scan_chunked(**inputs, delta_softplus=True, block_size=inputs["u"].shape[2])
    assert rel_err(blocked, whole) <= 1e-6


@pytest.mark.parametrize(
    ("option", "message"), [("chunk_size", "chunk_size must be"), ("block_size", "block_size must be")]
)
def test_chunk_and_block_sizes_must_be_positive(option: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        selective_scan_chunked(**make_inputs(), **{option: 0})


def test_auto_on_cpu_is_chunked() -> None:
    inputs = make_inputs(length=40)
    torch.testing.assert_close(selective_scan(**inputs), selective_scan_chunked(**inputs), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"B": torch.zeros(2, 3, 4, 100), "C": torch.zeros(2, 3, 4, 100)}, "divisible"),
        ({"delta": torch.zeros(2, 8, 99)}, "delta must have"),
        ({"C": torch.zeros(2, 1, 4, 99)}, "C must be"),
        ({"A": torch.zeros(8, 5)}, "B must be"),
        ({"D": torch.zeros(7)}, "D must be"),
        ({"z": torch.zeros(2, 8, 99)}, "z must have"),
    ],
)
def test_bad_shapes_raise(change: dict[str, torch.Tensor], message: str) -> None:
    inputs = {**make_inputs(), **change}
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs)


def test_unknown_impl_raises() -> None:
    with pytest.raises(ValueError, match="impl must be one of"):
        selective_scan(**make_inputs(length=4), impl="triton")


def test_cuda_impl_needs_mamba_ssm_and_cuda_tensors() -> None:
    with pytest.raises(SeldEdgeError, match=r"mamba-ssm|CUDA tensors"):
        selective_scan(**make_inputs(length=4), impl="cuda")


@pytest.mark.skipif(
    _mamba_selective_scan_fn() is None or not torch.cuda.is_available(),
    reason="needs mamba-ssm's CUDA kernel and a GPU (mamba-ssm cannot be installed on the CPU test machines)",
)
def test_cuda_matches_reference() -> None:
    inputs = {k: v.cuda() for k, v in make_inputs(groups=4, length=300).items()}
    y_ref, x_ref = selective_scan(**inputs, delta_softplus=True, return_last_state=True, impl="reference")
    y, x = selective_scan(**inputs, delta_softplus=True, return_last_state=True, impl="cuda")
    assert rel_err(y, y_ref) <= 1e-4
    assert rel_err(x, x_ref) <= 1e-4


def test_compiled_matches_reference_across_blocks_and_a_shorter_last_one() -> None:
    """Three whole blocks through the two compiled steps, the state carried between them (slow decay:
    it matters far ahead), and the last 13 steps run uncompiled."""
    inputs = make_inputs(groups=2, length=3 * 64 + 13, delta_scale=0.05)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # export tests trace with dynamo too
    with torch.inference_mode():
        y_ref, x_ref = selective_scan(**inputs, delta_softplus=True, return_last_state=True, impl="reference")
        y, x = selective_scan_chunked(
            **inputs, delta_softplus=True, return_last_state=True, block_size=64, compiled=True
        )
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 2  # both steps really compiled, once
    assert rel_err(y, y_ref) <= 1e-5
    assert rel_err(x, x_ref) <= 1e-5


@pytest.mark.parametrize(
    ("device", "requires_grad", "message"),
    [("cpu", True, "for inference"), ("meta", False, "for CPU tensors")],
)
def test_compiled_is_for_cpu_inference(device: str, requires_grad: bool, message: str) -> None:
    inputs = {k: v.to(device) for k, v in make_inputs(length=8).items()}
    inputs["u"].requires_grad_(requires_grad)
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs, impl="compiled")
