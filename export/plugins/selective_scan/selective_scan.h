// The SelectiveScan node's CUDA kernel (README.md: the contract). One launcher, launchSelectiveScan, serves
// every wrapper: the TensorRT plugins (IPluginV3 for 10.x, IPluginV2DynamicExt for 8.x) and the C API that
// Python loads with ctypes (bench_gpu.py, the tests). This header needs no TensorRT and no nvcc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace seld
{

//! Element type of u, delta, B, C, z and y. A, delta_bias and D_skip are always float32.
enum ScanDType : int32_t
{
    kScanFloat32 = 0,
    kScanFloat16 = 1,
};

constexpr int32_t kMaxDState = 64;

//! One scan call: the node's settings, its shapes and its device pointers (row-major, contiguous).
//! Plain C layout: Python mirrors it with ctypes (export/scan_kernel.py), checked by seld_scan_params_size().
struct ScanParams
{
    int64_t batch;
    int64_t dim;    // D
    int64_t length; // L
    int32_t dState; // N
    int32_t groups; // G
    int32_t deltaSoftplus;
    int32_t hasZ;
    int32_t hasD;
    int32_t dtype; // ScanDType
    void const* u;         // (batch, D, L)
    void const* delta;     // (batch, D, L)
    float const* A;        // (D, N)
    void const* B;         // (batch, G, N, L)
    void const* C;         // (batch, G, N, L)
    float const* deltaBias; // (D,)
    float const* dSkip;    // (D,) when hasD
    void const* z;         // (batch, D, L) when hasZ
    void* y;               // (batch, D, L)
};

//! How the sequence is cut: `chunks` chunks of `chunkLength` steps (the last may be shorter). A pure function of
//! the shapes so that the numpy model of the algorithm (export/scan_kernel.py) cuts the same way.
struct ScanPlan
{
    int64_t chunks;
    int64_t chunkLength;
};

//! The scan passes stage their inputs through shared memory in tiles of kTileChannels channels (one thread each,
//! the block) by kTileSteps time steps, so that global loads and stores run along L (selective_scan_thread.cuh).
constexpr int kTileChannels = 64;
constexpr int kTileSteps = 32;

//! Enough threads to fill a large GPU (batch * D * chunks of them). Every chunk but the last has at least
//! kMinChunkLength steps and, when there are several, a whole number of kTileSteps tiles.
constexpr int64_t kTargetThreads = int64_t{1} << 17;
constexpr int64_t kMinChunkLength = 64;

ScanPlan planScan(int64_t batch, int64_t dim, int64_t length);

//! Bytes of device workspace a call needs: the chunk states and each chunk's sum of dt (0 for a single chunk).
size_t scanWorkspaceSize(int64_t batch, int64_t dim, int64_t dState, int64_t length);

//! Bytes enough for every call with batch <= maxBatch and length <= maxLength (what a TensorRT plugin reserves for
//! its optimization profile): the plan's chunk count is not monotonic in the batch size, so this bounds them all.
size_t scanWorkspaceBound(int64_t maxBatch, int64_t dim, int64_t dState, int64_t maxLength);

//! nullptr when the call is valid, else a one-line reason.
char const* checkScanParams(ScanParams const& p);

//! Enqueues the scan on `stream`. cudaErrorInvalidValue for invalid params (checkScanParams says why) or a
//! workspace smaller than scanWorkspaceSize; otherwise the launch status.
cudaError_t launchSelectiveScan(ScanParams const& p, void* workspace, size_t workspaceSize, cudaStream_t stream);

} // namespace seld
