"""The SelectiveScan kernel on a GPU: accuracy against the PyTorch reference and timings, in one run.

    python export/plugins/selective_scan/bench_gpu.py [--lib libseld_selective_scan.so] [--json OUT]

Run from the repository root on a CUDA machine with torch, cmake and nvcc. Without --lib it builds the
kernel library for the local GPU first. For each shape (FFMamba first stages, a Mamba-LM layer):
- accuracy: fp32 max |y - ref| / max |ref| against selective_scan(impl="reference") (bound 1e-5), and fp16
  inputs/outputs against the reference on the same rounded inputs (bound 1e-2);
- time (CUDA events, median of --repeats after warm-up) of this kernel, of the chunked PyTorch form on the
  same GPU, and of mamba-ssm's kernel where it imports (target: no slower than it);
- bandwidth: the bytes a scan must move (every input read once, y written once) over the kernel's time,
  as a fraction of the device-to-device copy bandwidth measured in the same process (target: >= 50% at
  the FFMamba first-stage shapes; the two-pass scan reads u, delta and B twice, so about 60% is its ceiling).
Exit status 1 when an accuracy bound fails; timings and targets are reported, not asserted. To compare two
versions of the kernel, build each one's library (cmake, target seld_selective_scan) and pass it with --lib.
"""

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root: export/, seld_edge/

from export.scan_kernel import DTYPES, KERNEL_LIBRARY, KernelLibrary, ScanParams, build
from seld_edge.ops import selective_scan
from seld_edge.ops.selective_scan import _mamba_selective_scan_fn

# name: (batch, D, L, N, G, delta_softplus, with z)
SHAPES = {
    "ffmamba_stage1_5s": (1, 256, 12800, 4, 4, True, False),
    "ffmamba_stage1_20s": (1, 256, 51200, 4, 4, True, False),
    "mamba_lm": (1, 1536, 2048, 16, 1, True, True),
}
TORCH_DTYPES = {torch.float32: 0, torch.float16: 1}
assert sorted(TORCH_DTYPES.values()) == sorted(DTYPES.values())


def make_inputs(batch: int, dim: int, length: int, d_state: int, groups: int, with_z: bool) -> dict:
    """Mamba-like inputs on the GPU: A = -exp(.), raw delta around -3 (softplus steps of about 0.05)."""
    g = torch.Generator(device="cuda").manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, device="cuda")

    return {
        "u": randn(batch, dim, length),
        "delta": randn(batch, dim, length) - 3.0,
        "A": -torch.exp(randn(dim, d_state) * 0.5),
        "B": randn(batch, groups, d_state, length),
        "C": randn(batch, groups, d_state, length),
        "D": randn(dim),
        "z": randn(batch, dim, length) if with_z else None,
        "delta_bias": randn(dim) * 0.1,
    }


def kernel_call(library: KernelLibrary, x: dict, softplus: bool) -> Callable[[], torch.Tensor]:
    """A closure running this kernel on x (workspace allocated once), returning y."""
    batch, dim, length = x["u"].shape
    d_state, groups = x["A"].shape[1], x["B"].shape[1]
    y = torch.empty_like(x["u"])
    workspace_size = library.workspace_size(batch, dim, d_state, length)
    workspace = torch.empty(max(workspace_size, 1), dtype=torch.uint8, device="cuda")
    params = ScanParams(
        batch=batch, dim=dim, length=length, d_state=d_state, groups=groups, delta_softplus=int(softplus),
        has_z=int(x["z"] is not None), has_D=1, dtype=TORCH_DTYPES[x["u"].dtype],
        u=x["u"].data_ptr(), delta=x["delta"].data_ptr(), A=x["A"].data_ptr(), B=x["B"].data_ptr(),
        C=x["C"].data_ptr(), delta_bias=x["delta_bias"].data_ptr(), D_skip=x["D"].data_ptr(),
        z=x["z"].data_ptr() if x["z"] is not None else None, y=y.data_ptr(),
    )  # fmt: skip

    def run() -> torch.Tensor:
        library.launch(params, workspace.data_ptr(), workspace_size, torch.cuda.current_stream().cuda_stream)
        return y

    return run


def torch_call(x: dict, softplus: bool, impl: str) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        return selective_scan(
            x["u"], x["delta"], x["A"], x["B"], x["C"], D=x["D"], z=x["z"], delta_bias=x["delta_bias"],
            delta_softplus=softplus, impl=impl,
        )  # fmt: skip

    return run


def milliseconds(fn: Callable[[], object], repeats: int) -> float:
    """Median time of fn on the GPU, by CUDA events, after three warm-up calls."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def copy_bandwidth(repeats: int) -> float:
    """Bytes per second of a 1 GiB device-to-device copy (read + write), the achievable bound."""
    source = torch.empty(1 << 28, dtype=torch.float32, device="cuda")
    target = torch.empty_like(source)
    ms = milliseconds(lambda: target.copy_(source), repeats)
    return 2 * source.numel() * 4 / (ms / 1e3)


def scan_bytes(x: dict) -> int:
    """Bytes a scan must move: every input read once, y written once."""
    tensors = [t for t in x.values() if t is not None]
    return sum(t.numel() * t.element_size() for t in tensors) + x["u"].numel() * x["u"].element_size()


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    return ((y.double() - ref.double()).abs().max() / ref.double().abs().max()).item()


def half_inputs(x: dict) -> dict:
    """u, delta, B, C, z in float16; A, D, delta_bias stay float32 (the node's dtypes)."""
    low = {"u", "delta", "B", "C", "z"}
    return {k: (v.half() if k in low and v is not None else v) for k, v in x.items()}


def bench_shape(name: str, library: KernelLibrary, bandwidth: float, repeats: int) -> dict:
    batch, dim, length, d_state, groups, softplus, with_z = SHAPES[name]
    x = make_inputs(batch, dim, length, d_state, groups, with_z)
    ref = torch_call(x, softplus, "reference")()
    row: dict = {"shape": dict(batch=batch, D=dim, L=length, N=d_state, G=groups, z=with_z)}
    row["fp32_rel_err"] = rel_err(kernel_call(library, x, softplus)(), ref)
    half = half_inputs(x)
    rounded = {k: (v.float() if v is not None else None) for k, v in half.items()}
    row["fp16_rel_err"] = rel_err(kernel_call(library, half, softplus)(), torch_call(rounded, softplus, "reference")())
    row["kernel_ms"] = milliseconds(kernel_call(library, x, softplus), repeats)
    row["kernel_fp16_ms"] = milliseconds(kernel_call(library, half, softplus), repeats)
    row["torch_chunked_ms"] = milliseconds(torch_call(x, softplus, "chunked"), repeats)
    if _mamba_selective_scan_fn() is not None:
        row["mamba_ssm_rel_err"] = rel_err(torch_call(x, softplus, "cuda")(), ref)
        row["mamba_ssm_ms"] = milliseconds(torch_call(x, softplus, "cuda"), repeats)
    moved = scan_bytes(x)
    row["bytes"] = moved
    row["bandwidth_fraction"] = moved / (row["kernel_ms"] / 1e3) / bandwidth
    row["fp16_bandwidth_fraction"] = scan_bytes(half) / (row["kernel_fp16_ms"] / 1e3) / bandwidth
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lib", type=Path, help=f"a built {KERNEL_LIBRARY} (default: build one for this GPU)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--shapes", nargs="+", choices=sorted(SHAPES), default=list(SHAPES))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bench_gpu.py: no CUDA device visible to torch", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        library = KernelLibrary(args.lib or build(Path(tmp)) / KERNEL_LIBRARY)
        bandwidth = copy_bandwidth(args.repeats)
        device = torch.cuda.get_device_name()
        print(f"{device}: device-to-device copy {bandwidth / 1e9:.0f} GB/s; mamba-ssm: "
              f"{'yes' if _mamba_selective_scan_fn() else 'not installed'}")  # fmt: skip
        rows = {name: bench_shape(name, library, bandwidth, args.repeats) for name in args.shapes}
    ok = True
    for name, r in rows.items():
        versus = f", {r['kernel_ms'] / r['mamba_ssm_ms']:.2f}x mamba-ssm's time" if "mamba_ssm_ms" in r else ""
        print(
            f"{name} {r['shape']}: rel err fp32 {r['fp32_rel_err']:.1e} fp16 {r['fp16_rel_err']:.1e}; "
            f"kernel {r['kernel_ms']:.3f} ms (fp16 {r['kernel_fp16_ms']:.3f}), chunked PyTorch "
            f"{r['torch_chunked_ms']:.3f} ms = {r['torch_chunked_ms'] / r['kernel_ms']:.1f}x slower{versus}; "
            f"{r['bandwidth_fraction']:.0%} of copy bandwidth (fp16 {r['fp16_bandwidth_fraction']:.0%})"
        )
        ok = ok and r["fp32_rel_err"] <= 1e-5 and r["fp16_rel_err"] <= 1e-2
    stage1 = [r["bandwidth_fraction"] for name, r in rows.items() if name.startswith("ffmamba_stage1")]
    versus = [r["kernel_ms"] / r["mamba_ssm_ms"] for r in rows.values() if "mamba_ssm_ms" in r]
    print(
        "targets: >= 50% of copy bandwidth at the FFMamba first stage: "
        + (("met" if min(stage1) >= 0.5 else "missed") if stage1 else "not measured")
        + "; no slower than mamba-ssm: "
        + (("met" if max(versus) <= 1.0 else "missed") if versus else "not measured (mamba-ssm does not import)")
    )
    if args.json:
        args.json.write_text(json.dumps({"device": device, "copy_bandwidth": bandwidth, "shapes": rows}, indent=2))
    print("accuracy bounds: " + ("met" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
