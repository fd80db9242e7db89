// What one CUDA thread of each pass does, as __host__ __device__ functions: the kernels in selective_scan.cu
// are one-line wrappers around them, and host_test.cu runs the very same functions on the CPU (looping over the
// thread index) so the kernel's arithmetic and indexing are checked in CI, where there is no GPU.
//
// The algorithm: a chunked two-pass scan. The sequence is cut into plan.chunks chunks (planScan);
//   pass 1 (local)  one thread per (b, chunk, d), chunks 0..chunks-2: scan the chunk from a zero state, store
//                   the end state (N values) and the chunk's sum of dt;
//   carry           one thread per (b, n, d): walk the chunks in order, turning each stored end state into the
//                   state entering that chunk: h_in[0] = 0, h_in[c + 1] = exp(A * sum_dt[c]) * h_in[c] + local[c];
//   pass 2 (output) one thread per (b, chunk, d): scan the chunk again from h_in[chunk], writing y.
// With one chunk only pass 2 runs, from a zero state. Consecutive threads take consecutive channels d, so
// workspace reads and writes are coalesced and the channels of one group read the same B and C values.
#pragma once

#include "selective_scan.h"

#include <cmath>
#include <cuda_fp16.h>
#include <type_traits>

#if defined(__CUDACC__)
#define SELD_HD __host__ __device__ __forceinline__
#else
#define SELD_HD inline
#endif

// The state loops run over a compile-time kMaxN so the state stays in registers; the host compiler has no
// unroll pragma to honour.
#if defined(__CUDA_ARCH__)
#define SELD_UNROLL _Pragma("unroll")
#else
#define SELD_UNROLL
#endif

namespace seld
{
namespace detail
{

constexpr float kLog2e = 1.4426950408889634f;

template <typename T>
SELD_HD float toFloat(T v);
template <>
SELD_HD float toFloat<float>(float v)
{
    return v;
}
template <>
SELD_HD float toFloat<__half>(__half v)
{
    return __half2float(v);
}

template <typename T>
SELD_HD T fromFloat(float v);
template <>
SELD_HD float fromFloat<float>(float v)
{
    return v;
}
template <>
SELD_HD __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}

//! The workspace as the passes see it. states: (batch, chunks, N, D); dtSums: (batch, chunks, D).
struct ScanWork
{
    int64_t chunks;
    int64_t chunkLength;
    float* states;
    float* dtSums;
};

//! torch.nn.functional.softplus with its default threshold of 20.
SELD_HD float stepDelta(float raw, float bias, bool softplus)
{
    float const dt = raw + bias;
    return (softplus && dt <= 20.f) ? log1pf(expf(dt)) : dt;
}

//! Runs the recurrence over steps [t0, t1) of channel d of batch item b from `state` (updated in place) and
//! returns the sum of dt over those steps. kWriteY: also write y (pass 2).
template <typename T, int kMaxN, bool kWriteY>
SELD_HD float scanSteps(ScanParams const& p, int64_t b, int64_t d, int64_t t0, int64_t t1, float (&state)[kMaxN])
{
    int32_t const nState = p.dState;
    int64_t const g = d / (p.dim / p.groups);
    int64_t const L = p.length;
    float a2[kMaxN]; // A * log2(e): exp(dt * A) = exp2(dt * a2)
SELD_UNROLL
    for (int n = 0; n < kMaxN; ++n)
    {
        a2[n] = n < nState ? p.A[d * nState + n] * kLog2e : 0.f;
    }
    int64_t const row = (b * p.dim + d) * L;
    T const* u = static_cast<T const*>(p.u) + row;
    T const* delta = static_cast<T const*>(p.delta) + row;
    T const* Bg = static_cast<T const*>(p.B) + (b * p.groups + g) * nState * L;
    T const* Cg = static_cast<T const*>(p.C) + (b * p.groups + g) * nState * L;
    float const bias = p.deltaBias[d];
    float const skip = p.hasD ? p.dSkip[d] : 0.f;
    float dtSum = 0.f;
    for (int64_t t = t0; t < t1; ++t)
    {
        float const ut = toFloat(u[t]);
        float const dt = stepDelta(toFloat(delta[t]), bias, p.deltaSoftplus != 0);
        float const dtu = dt * ut;
        dtSum += dt;
        float yt = 0.f;
SELD_UNROLL
        for (int n = 0; n < kMaxN; ++n)
        {
            if (n < nState)
            {
                state[n] = exp2f(dt * a2[n]) * state[n] + dtu * toFloat(Bg[n * L + t]);
                if (kWriteY)
                {
                    yt += toFloat(Cg[n * L + t]) * state[n];
                }
            }
        }
        if (kWriteY)
        {
            yt += skip * ut;
            if (p.hasZ)
            {
                float const zt = toFloat(static_cast<T const*>(p.z)[row + t]);
                yt *= zt / (1.f + expf(-zt));
            }
            static_cast<T*>(p.y)[row + t] = fromFloat<T>(yt);
        }
    }
    return dtSum;
}

//! Calls run(T{}, std::integral_constant<int, kMaxN>{}) with u's element type and the state size the kernels
//! are compiled for (the smallest of 4, 8, 16, 32, 64 >= N: the state lives in registers): the one dispatch the
//! launcher and the host test share.
template <typename T, typename Run>
auto dispatchStateSize(int32_t dState, Run&& run)
{
    if (dState <= 4)
    {
        return run(T{}, std::integral_constant<int, 4>{});
    }
    if (dState <= 8)
    {
        return run(T{}, std::integral_constant<int, 8>{});
    }
    if (dState <= 16)
    {
        return run(T{}, std::integral_constant<int, 16>{});
    }
    if (dState <= 32)
    {
        return run(T{}, std::integral_constant<int, 32>{});
    }
    return run(T{}, std::integral_constant<int, 64>{});
}

template <typename Run>
auto dispatchScan(ScanParams const& p, Run&& run)
{
    if (p.dtype == kScanFloat16)
    {
        return dispatchStateSize<__half>(p.dState, run);
    }
    return dispatchStateSize<float>(p.dState, run);
}

//! Thread `tid` of a pass over (batch, chunk, d), d fastest.
struct ChunkThread
{
    int64_t b;
    int64_t chunk;
    int64_t d;
};

SELD_HD ChunkThread chunkThread(int64_t tid, int64_t dim, int64_t chunks)
{
    int64_t const rest = tid / dim;
    return ChunkThread{rest / chunks, rest % chunks, tid % dim};
}

//! Pass 1, over batch * (chunks - 1) * D threads (the last chunk's end state is never needed).
template <typename T, int kMaxN>
SELD_HD void localScanThread(ScanParams const& p, ScanWork const& w, int64_t tid)
{
    ChunkThread const c = chunkThread(tid, p.dim, w.chunks - 1);
    int64_t const t0 = c.chunk * w.chunkLength;
    float state[kMaxN];
SELD_UNROLL
    for (int n = 0; n < kMaxN; ++n)
    {
        state[n] = 0.f;
    }
    float const dtSum = scanSteps<T, kMaxN, false>(p, c.b, c.d, t0, t0 + w.chunkLength, state);
    int64_t const slot = c.b * w.chunks + c.chunk;
    float* out = w.states + slot * p.dState * p.dim + c.d;
SELD_UNROLL
    for (int n = 0; n < kMaxN; ++n)
    {
        if (n < p.dState)
        {
            out[n * p.dim] = state[n];
        }
    }
    w.dtSums[slot * p.dim + c.d] = dtSum;
}

//! Carry, over batch * N * D threads, d fastest: sequential over the chunks, in order.
SELD_HD void carryThread(ScanParams const& p, ScanWork const& w, int64_t tid)
{
    int64_t const d = tid % p.dim;
    int64_t const n = (tid / p.dim) % p.dState;
    int64_t const b = tid / (p.dim * p.dState);
    float const a2 = p.A[d * p.dState + n] * kLog2e;
    float h = 0.f;
    for (int64_t chunk = 0; chunk + 1 < w.chunks; ++chunk)
    {
        int64_t const slot = b * w.chunks + chunk;
        float* entry = w.states + (slot * p.dState + n) * p.dim + d;
        float const local = *entry;
        float const decay = exp2f(a2 * w.dtSums[slot * p.dim + d]);
        *entry = h;
        h = decay * h + local;
    }
    w.states[((b * w.chunks + w.chunks - 1) * p.dState + n) * p.dim + d] = h;
}

//! Pass 2, over batch * chunks * D threads: the chunk again from its entering state, writing y.
template <typename T, int kMaxN>
SELD_HD void outputThread(ScanParams const& p, ScanWork const& w, int64_t tid)
{
    ChunkThread const c = chunkThread(tid, p.dim, w.chunks);
    int64_t const t0 = c.chunk * w.chunkLength;
    int64_t const t1 = t0 + w.chunkLength < p.length ? t0 + w.chunkLength : p.length;
    float const* entering = w.chunks > 1 ? w.states + (c.b * w.chunks + c.chunk) * p.dState * p.dim + c.d : nullptr;
    float state[kMaxN];
SELD_UNROLL
    for (int n = 0; n < kMaxN; ++n)
    {
        state[n] = (entering != nullptr && n < p.dState) ? entering[n * p.dim] : 0.f;
    }
    scanSteps<T, kMaxN, true>(p, c.b, c.d, t0, t1, state);
}

} // namespace detail
} // namespace seld
