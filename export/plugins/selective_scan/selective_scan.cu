// The SelectiveScan plan, kernels and launcher. What the threads of each pass compute lives in
// selective_scan_thread.cuh (shared with the CPU run in host_test.cu); the C API is scan_c_api.cpp.
#include "selective_scan.h"
#include "selective_scan_thread.cuh"

namespace seld
{

namespace
{

int64_t ceilDiv(int64_t a, int64_t b)
{
    return (a + b - 1) / b;
}

//! The most chunks a plan cuts `length` steps into for `channels` = batch * D: enough for about kTargetThreads
//! threads, and few enough that each has kMinChunkLength steps (L / kMinChunkLength, rounded down, at least 1).
int64_t chunkBound(int64_t channels, int64_t length)
{
    int64_t const wanted = ceilDiv(kTargetThreads, channels > 0 ? channels : 1);
    int64_t const longEnough = length / kMinChunkLength > 1 ? length / kMinChunkLength : 1;
    return wanted < longEnough ? wanted : longEnough;
}

} // namespace

ScanPlan planScan(int64_t batch, int64_t dim, int64_t length)
{
    if (length <= 0)
    {
        return ScanPlan{1, 0};
    }
    int64_t const chunks = chunkBound(batch * dim, length);
    if (chunks == 1)
    {
        return ScanPlan{1, length};
    }
    // Whole tiles per chunk, so that every tile of a chunk starts on the tile grid of L.
    int64_t const chunkLength = ceilDiv(ceilDiv(length, chunks), kTileSteps) * kTileSteps;
    return ScanPlan{ceilDiv(length, chunkLength), chunkLength};
}

size_t scanWorkspaceSize(int64_t batch, int64_t dim, int64_t dState, int64_t length)
{
    ScanPlan const plan = planScan(batch, dim, length);
    if (plan.chunks <= 1)
    {
        return 0;
    }
    return static_cast<size_t>(batch * plan.chunks * dim * (dState + 1)) * sizeof(float);
}

size_t scanWorkspaceBound(int64_t maxBatch, int64_t dim, int64_t dState, int64_t maxLength)
{
    size_t most = 0;
    for (int64_t batch = 1; batch <= maxBatch; ++batch)
    {
        // planScan's chunk count before the chunk length is rounded up, which never undercounts and grows with L.
        int64_t const chunks = chunkBound(batch * dim, maxLength);
        size_t const bytes = chunks > 1 ? static_cast<size_t>(batch * chunks * dim * (dState + 1)) * sizeof(float) : 0;
        most = bytes > most ? bytes : most;
    }
    return most;
}

char const* checkScanParams(ScanParams const& p)
{
    if (p.dState < 1 || p.dState > kMaxDState)
    {
        return "d_state must be between 1 and 64";
    }
    if (p.dim < 1 || p.groups < 1 || p.dim % p.groups != 0)
    {
        return "D must be positive and divisible by groups";
    }
    if (p.batch < 0 || p.length < 0)
    {
        return "batch and L must not be negative";
    }
    if (p.dtype != kScanFloat32 && p.dtype != kScanFloat16)
    {
        return "dtype must be float32 (0) or float16 (1)";
    }
    if (p.batch == 0 || p.length == 0)
    {
        return nullptr;
    }
    if (!p.u || !p.delta || !p.A || !p.B || !p.C || !p.deltaBias || !p.y)
    {
        return "u, delta, A, B, C, delta_bias and y must be given";
    }
    if ((p.hasD && !p.dSkip) || (p.hasZ && !p.z))
    {
        return "D_skip (has_D) and z (has_z) must be given when flagged";
    }
    return nullptr;
}

namespace
{

using detail::ScanWork;

constexpr int kCarryThreads = 128;

unsigned blocksFor(int64_t threads, int64_t perBlock)
{
    return static_cast<unsigned>((threads + perBlock - 1) / perBlock);
}

//! Pass 1 (kOutput false) or pass 2 (kOutput true): one block per tile of channels and chunk (scanBlock).
template <typename T, int kMaxN, bool kOutput>
__global__ void __launch_bounds__(kTileChannels) scanKernel(ScanParams const p, ScanWork const w)
{
    __shared__ detail::ScanTiles<kMaxN> tiles;
    detail::scanBlock<T, kMaxN, kOutput>(p, w, blockIdx.x, tiles);
}

__global__ void __launch_bounds__(kCarryThreads) carryKernel(ScanParams const p, ScanWork const w, int64_t threads)
{
    int64_t const tid = static_cast<int64_t>(blockIdx.x) * kCarryThreads + threadIdx.x;
    if (tid < threads)
    {
        detail::carryThread(p, w, tid);
    }
}

template <typename T, int kMaxN>
cudaError_t launchPasses(ScanParams const& p, ScanWork const& w, cudaStream_t stream)
{
    if (w.chunks > 1)
    {
        unsigned const local = static_cast<unsigned>(detail::passBlocks(p, w.chunks - 1));
        scanKernel<T, kMaxN, false><<<local, kTileChannels, 0, stream>>>(p, w);
        int64_t const carry = p.batch * p.dState * p.dim;
        carryKernel<<<blocksFor(carry, kCarryThreads), kCarryThreads, 0, stream>>>(p, w, carry);
    }
    unsigned const output = static_cast<unsigned>(detail::passBlocks(p, w.chunks));
    scanKernel<T, kMaxN, true><<<output, kTileChannels, 0, stream>>>(p, w);
    return cudaGetLastError();
}

} // namespace

cudaError_t launchSelectiveScan(ScanParams const& p, void* workspace, size_t workspaceSize, cudaStream_t stream)
{
    if (checkScanParams(p) != nullptr)
    {
        return cudaErrorInvalidValue;
    }
    if (p.batch == 0 || p.length == 0)
    {
        return cudaSuccess;
    }
    ScanPlan const plan = planScan(p.batch, p.dim, p.length);
    size_t const needed = scanWorkspaceSize(p.batch, p.dim, p.dState, p.length);
    if (workspaceSize < needed || (needed > 0 && workspace == nullptr))
    {
        return cudaErrorInvalidValue;
    }
    float* states = static_cast<float*>(workspace);
    ScanWork const w{plan.chunks, plan.chunkLength, states,
        states == nullptr ? nullptr : states + p.batch * plan.chunks * p.dState * p.dim};
    return detail::dispatchScan(p, [&](auto element, auto stateSize) {
        return launchPasses<decltype(element), decltype(stateSize)::value>(p, w, stream);
    });
}

} // namespace seld
