// The C API of the kernel library (libseld_selective_scan.so): what Python binds with ctypes
// (export/scan_kernel.py). Every call goes through seld::launchSelectiveScan. Returns are cudaError_t values.
#include "selective_scan.h"

extern "C"
{

__attribute__((visibility("default"))) int32_t seld_scan_params_size()
{
    return static_cast<int32_t>(sizeof(seld::ScanParams));
}

__attribute__((visibility("default"))) void seld_scan_plan(
    int64_t batch, int64_t dim, int64_t length, int64_t* chunks, int64_t* chunkLength)
{
    seld::ScanPlan const plan = seld::planScan(batch, dim, length);
    *chunks = plan.chunks;
    *chunkLength = plan.chunkLength;
}

__attribute__((visibility("default"))) size_t seld_scan_workspace_size(
    int64_t batch, int64_t dim, int64_t dState, int64_t length)
{
    return seld::scanWorkspaceSize(batch, dim, dState, length);
}

__attribute__((visibility("default"))) char const* seld_scan_check(seld::ScanParams const* params)
{
    return seld::checkScanParams(*params);
}

__attribute__((visibility("default"))) int32_t seld_selective_scan(
    seld::ScanParams const* params, void* workspace, size_t workspaceSize, void* stream)
{
    return static_cast<int32_t>(
        seld::launchSelectiveScan(*params, workspace, workspaceSize, static_cast<cudaStream_t>(stream)));
}

__attribute__((visibility("default"))) char const* seld_cuda_error_string(int32_t error)
{
    return cudaGetErrorString(static_cast<cudaError_t>(error));
}

} // extern "C"
