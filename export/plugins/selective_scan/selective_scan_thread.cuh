// What the threads of each pass compute, as __host__ __device__ functions: the kernels in selective_scan.cu are
// one-line wrappers around them, and host_test.cu runs the very same functions on the CPU (block by block, each
// phase of a block thread by thread) so the kernel's arithmetic and indexing are checked in CI, where there is no GPU.
//
// The algorithm: a chunked two-pass scan. The sequence is cut into plan.chunks chunks (planScan);
//   pass 1 (local)  chunks 0..chunks-2, each channel from a zero state: store the end state (N values) and the
//                   chunk's sum of dt;
//   carry           one thread per (b, n, d): walk the chunks in order, turning each stored end state into the
//                   state entering that chunk: h_in[0] = 0, h_in[c + 1] = exp(A * sum_dt[c]) * h_in[c] + local[c];
//   pass 2 (output) every chunk again from h_in[chunk], writing y.
// With one chunk only pass 2 runs, from a zero state.
//
// The passes run one thread per channel, sequential over time with the N-value state in registers. A block is a
// tile of kTileChannels channels of one group in one chunk of one batch item; it walks its chunk kTileSteps steps
// at a time. u, delta, z and y are (batch, D, L), so the channels of a warp are rows L elements apart: the block
// first copies a [channels x steps] tile of u and delta, and B and C's [N x steps] tile of its group, into shared
// memory with consecutive threads reading consecutive steps (coalesced), then each thread scans its row there,
// and the output pass writes y back the same way, along L. Workspace reads and writes run along D (coalesced).
// A tile never straddles two groups, so all its channels share one B and C tile (read as broadcasts); when
// D / G is not a multiple of kTileChannels the last tile of each group has idle threads.
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

//! A tile row: kTileSteps values and one of padding, so that the 32 threads of a warp, reading one step of 32
//! consecutive rows, hit 32 different shared-memory banks.
constexpr int kTilePitch = kTileSteps + 1;

//! A block's shared memory: u and delta of its channels as [channel][step] (y replaces u in the output pass, each
//! thread in its own row), B and C of its group as [n][step], rows from N to kMaxN zero.
template <int kMaxN>
struct ScanTiles
{
    static_assert(kTileChannels % kTileSteps == 0, "the copies move whole rows of kTileSteps steps");

    float u[kTileChannels][kTilePitch];
    float delta[kTileChannels][kTilePitch];
    float B[kMaxN][kTileSteps];
    float C[kMaxN][kTileSteps];
};

//! What one block scans: batch item b, steps [t0, t1) (chunk `chunk`), channels [d0, dEnd) of group g.
struct ChunkTile
{
    int64_t b;
    int64_t chunk;
    int64_t g;
    int64_t d0;
    int64_t dEnd;
    int64_t t0;
    int64_t t1;
};

//! Channel tiles per group: a tile never straddles two groups, so its channels share one B and C tile.
SELD_HD int64_t tilesPerGroup(ScanParams const& p)
{
    return (p.dim / p.groups + kTileChannels - 1) / kTileChannels;
}

//! Blocks of a pass over the first `chunks` chunks (the local pass: all but the last).
SELD_HD int64_t passBlocks(ScanParams const& p, int64_t chunks)
{
    return p.batch * chunks * p.groups * tilesPerGroup(p);
}

//! Block `block` of a pass over `chunks` chunks: channel tiles fastest, then groups, chunks and batch items.
SELD_HD ChunkTile chunkTile(ScanParams const& p, ScanWork const& w, int64_t block, int64_t chunks)
{
    int64_t const perGroup = p.dim / p.groups;
    int64_t const tiles = tilesPerGroup(p);
    int64_t const g = (block / tiles) % p.groups;
    int64_t const chunk = (block / (tiles * p.groups)) % chunks;
    int64_t const d0 = g * perGroup + (block % tiles) * kTileChannels;
    int64_t const groupEnd = (g + 1) * perGroup;
    int64_t const t0 = chunk * w.chunkLength;
    return ChunkTile{block / (tiles * p.groups * chunks), chunk, g, d0,
        d0 + kTileChannels < groupEnd ? d0 + kTileChannels : groupEnd, t0,
        t0 + w.chunkLength < p.length ? t0 + w.chunkLength : p.length};
}

//! How the threads of a block run one phase of a pass. On the GPU each thread runs its own part (thread =
//! threadIdx.x), then waits for the others; what a thread keeps from phase to phase (Local) is its registers. On
//! the CPU (host_test.cu) a loop runs every thread's part in turn, and Local holds one value per thread.
struct BlockThreads
{
#if defined(__CUDA_ARCH__)
    template <typename T>
    struct Local
    {
        T mine;

        __device__ T& operator[](int)
        {
            return mine;
        }
    };

    template <typename Phase>
    __device__ void run(Phase&& phase) const
    {
        phase(static_cast<int>(threadIdx.x));
        __syncthreads();
    }
#else
    template <typename T>
    struct Local
    {
        T all[kTileChannels];

        T& operator[](int thread)
        {
            return all[thread];
        }
    };

    template <typename Phase>
    void run(Phase&& phase) const
    {
        for (int thread = 0; thread < kTileChannels; ++thread)
        {
            phase(thread);
        }
    }
#endif
};

//! One channel's registers: its state, A * log2(e) (exp(dt * A) = exp2(dt * a2)), its bias, D skip, sum of dt.
template <int kMaxN>
struct ChannelState
{
    float h[kMaxN];
    float a2[kMaxN];
    float bias;
    float skip;
    float dtSum;
};

//! The thread's channel at the start of its chunk: zero state, or (output pass of a chunked scan) the state the
//! carry left for the chunk. Threads past the tile's channels get zeros and stay idle.
template <int kMaxN, bool kOutput>
SELD_HD void startChannel(ScanParams const& p, ScanWork const& w, ChunkTile const& c, int thread, ChannelState<kMaxN>& s)
{
    int64_t const d = c.d0 + thread;
    bool const active = d < c.dEnd;
    float const* entering
        = (kOutput && active && w.chunks > 1) ? w.states + (c.b * w.chunks + c.chunk) * p.dState * p.dim + d : nullptr;
SELD_UNROLL
    for (int n = 0; n < kMaxN; ++n)
    {
        bool const used = active && n < p.dState;
        s.a2[n] = used ? p.A[d * p.dState + n] * kLog2e : 0.f;
        s.h[n] = (used && entering != nullptr) ? entering[n * p.dim] : 0.f;
    }
    s.bias = active ? p.deltaBias[d] : 0.f;
    s.skip = active && p.hasD ? p.dSkip[d] : 0.f;
    s.dtSum = 0.f;
}

// The copies between global and shared memory: thread `thread` moves step thread % kTileSteps of rows
// thread / kTileSteps, + kRowsPerCopy, + 2 kRowsPerCopy, ...: each warp moves kTileSteps consecutive steps of one row
// (coalesced along L), one pointer per tensor and thread walking down the rows, a few rows in flight at a time.
constexpr int kRowsPerCopy = kTileChannels / kTileSteps;
#if defined(__CUDA_ARCH__)
#define SELD_COPY_UNROLL _Pragma("unroll 4")
#else
#define SELD_COPY_UNROLL
#endif

//! The thread's share of staging steps [t, t + steps): u and delta of the tile's channels, B (and for the output
//! pass C) of its group. Entries past the tile's channels, N or the steps are 0.
template <typename T, int kMaxN, bool kOutput>
SELD_HD void loadTile(ScanParams const& p, ChunkTile const& c, int64_t t, int steps, ScanTiles<kMaxN>& tiles, int thread)
{
    int const step = thread % kTileSteps;
    bool const inChunk = step < steps;
    int const rows = static_cast<int>(c.dEnd - c.d0);
    int64_t const channel = (c.b * p.dim + c.d0) * p.length + t + step;
    T const* u = static_cast<T const*>(p.u) + channel;
    T const* delta = static_cast<T const*>(p.delta) + channel;
SELD_COPY_UNROLL
    for (int row = thread / kTileSteps; row < kTileChannels; row += kRowsPerCopy)
    {
        bool const inside = inChunk && row < rows;
        tiles.u[row][step] = inside ? toFloat(u[row * p.length]) : 0.f;
        tiles.delta[row][step] = inside ? toFloat(delta[row * p.length]) : 0.f;
    }
    int64_t const group = (c.b * p.groups + c.g) * p.dState * p.length + t + step;
    T const* B = static_cast<T const*>(p.B) + group;
    T const* C = static_cast<T const*>(p.C) + group;
SELD_COPY_UNROLL
    for (int n = thread / kTileSteps; n < kMaxN; n += kRowsPerCopy)
    {
        bool const inside = inChunk && n < p.dState;
        tiles.B[n][step] = inside ? toFloat(B[n * p.length]) : 0.f;
        if (kOutput)
        {
            tiles.C[n][step] = inside ? toFloat(C[n * p.length]) : 0.f;
        }
    }
}

//! The thread's channel (tile row `row`) through `steps` staged steps. Output pass: y over u in the same row and
//! step, after reading u there (no other thread touches the row).
template <int kMaxN, bool kOutput>
SELD_HD void scanRow(ScanParams const& p, ScanTiles<kMaxN>& tiles, int row, int steps, ChannelState<kMaxN>& s)
{
    bool const softplus = p.deltaSoftplus != 0;
    for (int k = 0; k < steps; ++k)
    {
        float const ut = tiles.u[row][k];
        float const dt = stepDelta(tiles.delta[row][k], s.bias, softplus);
        float const dtu = dt * ut;
        float yt = 0.f;
SELD_UNROLL
        for (int n = 0; n < kMaxN; ++n)
        {
            if (n < p.dState)
            {
                s.h[n] = exp2f(dt * s.a2[n]) * s.h[n] + dtu * tiles.B[n][k];
                if (kOutput)
                {
                    yt += tiles.C[n][k] * s.h[n];
                }
            }
        }
        if (kOutput)
        {
            tiles.u[row][k] = yt + s.skip * ut;
        }
        else
        {
            s.dtSum += dt;
        }
    }
}

//! The thread's share of writing the y tile back along L, as loadTile reads u; the z gate is applied here, z read
//! at the same (coalesced) positions.
template <typename T>
SELD_HD void storeRows(ScanParams const& p, ChunkTile const& c, int64_t t, int steps,
    float const (&tile)[kTileChannels][kTilePitch], int thread)
{
    int const step = thread % kTileSteps;
    int const rows = static_cast<int>(c.dEnd - c.d0);
    if (step >= steps)
    {
        return;
    }
    int64_t const first = (c.b * p.dim + c.d0) * p.length + t + step;
    T* y = static_cast<T*>(p.y) + first;
    T const* z = p.hasZ ? static_cast<T const*>(p.z) + first : nullptr;
SELD_COPY_UNROLL
    for (int row = thread / kTileSteps; row < rows; row += kRowsPerCopy)
    {
        float value = tile[row][step];
        if (z != nullptr)
        {
            float const zt = toFloat(z[row * p.length]);
            value *= zt / (1.f + expf(-zt));
        }
        y[row * p.length] = fromFloat<T>(value);
    }
}

//! Local pass: the chunk's end state and sum of dt to the workspace, coalesced along D.
template <int kMaxN>
SELD_HD void storeEndState(ScanParams const& p, ScanWork const& w, ChunkTile const& c, int thread,
    ChannelState<kMaxN> const& s)
{
    int64_t const d = c.d0 + thread;
    if (d >= c.dEnd)
    {
        return;
    }
    int64_t const slot = c.b * w.chunks + c.chunk;
    float* out = w.states + slot * p.dState * p.dim + d;
SELD_UNROLL
    for (int n = 0; n < kMaxN; ++n)
    {
        if (n < p.dState)
        {
            out[n * p.dim] = s.h[n];
        }
    }
    w.dtSums[slot * p.dim + d] = s.dtSum;
}

//! Block `block` of pass 1 (kOutput false, over chunks 0..chunks-2) or pass 2 (kOutput true, every chunk): its
//! chunk tile by tile, each tile staged, scanned, and (pass 2) written back, with a barrier after each phase.
template <typename T, int kMaxN, bool kOutput>
SELD_HD void scanBlock(ScanParams const& p, ScanWork const& w, int64_t block, ScanTiles<kMaxN>& tiles)
{
    BlockThreads const threads;
    ChunkTile const c = chunkTile(p, w, block, kOutput ? w.chunks : w.chunks - 1);
    typename BlockThreads::template Local<ChannelState<kMaxN>> channel;
    threads.run([&](int thread) { startChannel<kMaxN, kOutput>(p, w, c, thread, channel[thread]); });
    for (int64_t t = c.t0; t < c.t1; t += kTileSteps)
    {
        int const steps = c.t1 - t < kTileSteps ? static_cast<int>(c.t1 - t) : kTileSteps;
        threads.run([&](int thread) { loadTile<T, kMaxN, kOutput>(p, c, t, steps, tiles, thread); });
        threads.run([&](int thread) {
            if (c.d0 + thread < c.dEnd)
            {
                scanRow<kMaxN, kOutput>(p, tiles, thread, steps, channel[thread]);
            }
        });
        if (kOutput)
        {
            threads.run([&](int thread) { storeRows<T>(p, c, t, steps, tiles.u, thread); });
        }
    }
    if (!kOutput)
    {
        threads.run([&](int thread) { storeEndState<kMaxN>(p, w, c, thread, channel[thread]); });
    }
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

} // namespace detail
} // namespace seld
