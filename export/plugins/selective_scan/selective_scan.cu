// The SelectiveScan kernels, their launcher and the C API that Python loads with ctypes.
// What each thread computes lives in selective_scan_thread.cuh (shared with the CPU run in host_test.cu).
#include "selective_scan.h"
#include "selective_scan_thread.cuh"

namespace seld
{

ScanPlan planScan(int64_t batch, int64_t dim, int64_t length)
{
    if (length <= 0)
    {
        return ScanPlan{1, 0};
    }
    int64_t const channels = batch * dim > 0 ? batch * dim : 1;
    int64_t const wanted = (kTargetThreads + channels - 1) / channels;
    int64_t const mostChunks = (length + kMinChunkLength - 1) / kMinChunkLength;
    int64_t const chunks = wanted < mostChunks ? wanted : mostChunks;
    int64_t const chunkLength = (length + chunks - 1) / chunks;
    return ScanPlan{(length + chunkLength - 1) / chunkLength, chunkLength};
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
        // planScan's chunk count before rounding, which never undercounts and grows with the length.
        int64_t const wanted = (kTargetThreads + batch * dim - 1) / (batch * dim);
        int64_t const mostChunks = (maxLength + kMinChunkLength - 1) / kMinChunkLength;
        int64_t const chunks = wanted < mostChunks ? wanted : mostChunks;
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

constexpr int kThreads = 128;

unsigned blocksFor(int64_t threads)
{
    return static_cast<unsigned>((threads + kThreads - 1) / kThreads);
}

template <typename T, int kMaxN>
__global__ void __launch_bounds__(kThreads) localScanKernel(ScanParams const p, ScanWork const w, int64_t threads)
{
    int64_t const tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (tid < threads)
    {
        detail::localScanThread<T, kMaxN>(p, w, tid);
    }
}

__global__ void __launch_bounds__(kThreads) carryKernel(ScanParams const p, ScanWork const w, int64_t threads)
{
    int64_t const tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (tid < threads)
    {
        detail::carryThread(p, w, tid);
    }
}

template <typename T, int kMaxN>
__global__ void __launch_bounds__(kThreads) outputKernel(ScanParams const p, ScanWork const w, int64_t threads)
{
    int64_t const tid = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
    if (tid < threads)
    {
        detail::outputThread<T, kMaxN>(p, w, tid);
    }
}

template <typename T, int kMaxN>
cudaError_t launchPasses(ScanParams const& p, ScanWork const& w, cudaStream_t stream)
{
    if (w.chunks > 1)
    {
        int64_t const local = p.batch * (w.chunks - 1) * p.dim;
        localScanKernel<T, kMaxN><<<blocksFor(local), kThreads, 0, stream>>>(p, w, local);
        int64_t const carry = p.batch * p.dState * p.dim;
        carryKernel<<<blocksFor(carry), kThreads, 0, stream>>>(p, w, carry);
    }
    int64_t const output = p.batch * w.chunks * p.dim;
    outputKernel<T, kMaxN><<<blocksFor(output), kThreads, 0, stream>>>(p, w, output);
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
