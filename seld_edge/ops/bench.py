"""Benchmark of the selective scan: the chunked form against the sequential reference, one CPU core.

A 5 s FFMamba clip (24 kHz, hop 300) has about 400 frames of 128 mel bins, so its first stage scans
T * F positions, ~51k, in each of four directions. The default length 6400 is an eighth of that: the
ratio does not depend on the length (both forms are linear in it) and the reference stays short.
"""

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from seld_edge.benchmark import pin_to_one_core, time_call
from seld_edge.ops.selective_scan import CHUNK_SIZE, selective_scan_chunked, selective_scan_reference


def bench_selective_scan(
    batch: int = 1,
    d_inner: int = 64,
    d_state: int = 16,
    groups: int = 4,
    length: int = 6400,
    chunk_size: int = CHUNK_SIZE,
) -> Iterator[str]:
    """Yield report lines: median time of each form (warm-up first) and the chunked speed-up."""
    cpu = pin_to_one_core()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    u = torch.randn(batch, d_inner, length, generator=g)
    delta = torch.randn(batch, d_inner, length, generator=g)
    A = -torch.exp(torch.randn(d_inner, d_state, generator=g))
    B = torch.randn(batch, groups, d_state, length, generator=g)
    C = torch.randn(batch, groups, d_state, length, generator=g)
    D = torch.ones(d_inner)
    bias = F.softplus(torch.randn(d_inner, generator=g)) - 4.0
    args = (u, delta, A, B, C, D, None, bias, True)
    yield f"selective scan: batch {batch}, D {d_inner}, N {d_state}, G {groups}, L {length}, on cpu {cpu}, 1 thread"
    with torch.inference_mode():
        ref_s = time_call(lambda: selective_scan_reference(*args), warmup=1, min_repeats=3)
        chunked_s = time_call(lambda: selective_scan_chunked(*args, chunk_size=chunk_size), warmup=1, min_repeats=3)
    yield f"  sequential reference        {ref_s * 1e3:9.1f} ms"
    yield f"  chunked (K = {chunk_size:3d})          {chunked_s * 1e3:9.1f} ms"
    yield f"  chunked is {ref_s / chunked_s:.2f}x the speed of the reference (target >= 10x)"
