"""Benchmarks of the selective scan and of FFMamba, one CPU core, ratios against a reference run.

1. The chunked scan, eager and compiled (``impl="compiled"``), against the sequential reference in
   PyTorch, at FFMamba's first-stage shape: a 5 s clip is 400 frames x 32 pooled mel bins = 12,800
   positions, D = 4 directions x d_inner.
2. The same scan exported in the ``onnx`` flavour: graph size, ONNX Runtime against the PyTorch
   chunked form.
3. FFMamba (random weights, exported in the ``onnx`` flavour) on a 5 s clip through the runtime,
   audio to events, against real time and against PyTorch eager.
"""

import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from seld_edge.benchmark import one_core, speedup, time_calls_in_turns
from seld_edge.models import SeldSystem, model_card
from seld_edge.ops.selective_scan import (
    CHUNK_SIZE,
    CPU_BLOCK_SIZE,
    selective_scan_chunked,
    selective_scan_reference,
)
from seld_edge.process import keep_freed_memory

CLIP_SECONDS = 5.0


def ffmamba_first_stage() -> dict[str, int]:
    """The scan shape of FFMamba's first stage for a 5 s clip, from its model card."""
    card = model_card("ffmamba")
    args, config = card.defaults, card.feature_config()
    d_inner = int(args["ssm_ratio"] * args["stem_channels"])
    frames = round(CLIP_SECONDS * config.sample_rate / config.hop_length)
    return {
        "dim": 4 * d_inner,
        "d_state": args["d_state"],
        "groups": 4,
        "length": frames * config.n_bins // (args["stem_freq_stride"] * args["stem_freq_pool"]),
    }


def _scan_inputs(dim: int, d_state: int, groups: int, length: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(1, dim, length, generator=g)
    delta = torch.randn(1, dim, length, generator=g)
    A = -torch.exp(torch.randn(dim, d_state, generator=g))
    B = torch.randn(1, groups, d_state, length, generator=g)
    C = torch.randn(1, groups, d_state, length, generator=g)
    bias = F.softplus(torch.randn(dim, generator=g)) - 4.0
    return u, delta, A, B, C, torch.ones(dim), None, bias, True


def bench_selective_scan(length: int | None = None, with_model: bool = True) -> Iterator[str]:
    """Yield report lines for the three benchmarks of the module docstring, each on one core."""
    torch.set_num_threads(1)
    keep_freed_memory()
    shape = ffmamba_first_stage() | ({"length": length} if length else {})
    args = _scan_inputs(**shape)
    dims = f"D {shape['dim']}, N {shape['d_state']}, G 4, L {shape['length']}"
    with one_core() as cpu:
        yield f"selective scan at FFMamba's first stage: {dims}, cpu {cpu}, one thread per pool"
        with torch.inference_mode():
            start = time.perf_counter()
            selective_scan_chunked(*args, compiled=True)
            compile_s = time.perf_counter() - start
            # The reference's first few calls run up to 3x slower than its steady state (measured: 938, 497,
            # 440, then 275-370 ms); three warm-up calls compare steady states.
            medians = time_calls_in_turns(
                {
                    "reference": lambda: selective_scan_reference(*args),
                    "eager": lambda: selective_scan_chunked(*args),
                    "compiled": lambda: selective_scan_chunked(*args, compiled=True),
                },
                warmup=3,
            )
    ref_s, chunked_s, compiled_s = medians["reference"], medians["eager"], medians["compiled"]
    rows = (
        ("sequential reference", ref_s, ""),
        (f"chunked, eager (K {CHUNK_SIZE}, {CPU_BLOCK_SIZE}-step blocks)", chunked_s, speedup(ref_s, chunked_s)),
        ("chunked, compiled by torch.compile", compiled_s, speedup(ref_s, compiled_s)),
    )
    for name, seconds, ratio in rows:
        yield f"  {name:<40}{seconds * 1e3:8.1f} ms  {ratio}".rstrip()
    yield f"  compiling it took {compile_s:.1f} s (first call; Inductor caches it on disk for the next process)"
    yield f"  compiled chunked scan: {speedup(ref_s, compiled_s)} than the reference (target >= 10x)"
    yield from _bench_onnx_scan(args)
    if with_model:
        yield from _bench_ffmamba()


def _bench_onnx_scan(args: tuple) -> Iterator[str]:
    """The scan's ``onnx`` flavour in ONNX Runtime against the eager chunked form, timed in turns."""
    import onnxruntime as ort

    from export.onnx_export import quiet_torch_export
    from export.selective_scan_onnx import translation_table
    from runtime.model import session_options
    from seld_edge.ops import selective_scan

    u, delta, A, B, C, D, _, bias, _ = args

    class ExportedScan(torch.nn.Module):
        def forward(self, u: torch.Tensor, delta: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
            return selective_scan(u, delta, A, B, C, D, None, bias, True)

    length = torch.export.Dim("length", min=2, max=2**20)
    dims = ({2: length}, {2: length}, {3: length}, {3: length})
    small = tuple(t[..., :64] for t in (u, delta, B, C))
    with quiet_torch_export():
        model = torch.onnx.export(
            ExportedScan().eval(), small, dynamo=True, dynamic_shapes=dims, external_data=False, verbose=False,
            custom_translation_table=translation_table("onnx"),
        ).model_proto  # fmt: skip
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(threads=1), providers=["CPUExecutionProvider"]
    )
    feed = dict(zip((i.name for i in session.get_inputs()), (t.numpy() for t in (u, delta, B, C)), strict=True))
    with one_core(), torch.inference_mode():
        medians = time_calls_in_turns(
            {"onnx": lambda: session.run(None, feed), "eager": lambda: selective_scan_chunked(*args)},
            rounds=5,
            warmup=1,
        )
    yield f"  onnx flavour: {len(model.graph.node)} nodes, {model.ByteSize() / 1e3:.0f} kB per scan"
    ort_s = medians["onnx"]
    ratio = speedup(medians["eager"], ort_s)
    yield f"  {'onnx flavour in ONNX Runtime':<40}{ort_s * 1e3:8.1f} ms  {ratio} than the eager chunked form"


def _bench_ffmamba() -> Iterator[str]:
    from export.onnx_export import Exporter
    from training.bench import bench_runtime
    from training.checkpoint import save_checkpoint

    system = SeldSystem.unnormalised("ffmamba").eval()
    names = [f"class_{i}" for i in range(system.model_args["num_classes"])]
    with tempfile.TemporaryDirectory() as tmp:
        stem = Path(tmp) / "ffmamba"
        save_checkpoint(stem, system, {"class_names": names})
        start = time.perf_counter()
        exporter = Exporter(stem.with_suffix(".json"), log=lambda line: print(f"ffmamba {line}", file=sys.stderr))
        result = exporter("onnx", stem.with_suffix(".onnx"))
        yield (
            f"ffmamba (random weights): exported in {time.perf_counter() - start:.0f} s, "
            f"{result.size_bytes / 1e6:.1f} MB, {sum(p.numel() for p in system.parameters()) / 1e6:.2f} M parameters"
        )
        yield from bench_runtime(stem.with_suffix(".onnx"), stem.with_suffix(".json"), seconds=CLIP_SECONDS)
