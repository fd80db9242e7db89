// What the two TensorRT plugin flavours share: the node's settings and their fields, the input formats, shape
// checks, the mapping from tensor descriptors to the kernel's ScanParams, and the plugin library's logger.
// plugin_v3.cpp (TensorRT 10.x, IPluginV3) and plugin_v2.cpp (TensorRT 8.5/8.6, IPluginV2DynamicExt) are thin
// shells around these and the one launcher, seld::launchSelectiveScan.
#pragma once

#include "NvInferRuntime.h"
#include "NvInferVersion.h"
#include "selective_scan.h"

#include <cstdint>
#include <vector>

// The plugin interface this library implements, from the headers it is compiled against: IPluginV3 from TensorRT
// 10 on (plugin_v3.cpp), IPluginV2DynamicExt on 8.6 (plugin_v2.cpp). The preprocessor decides, not the build
// script: from 10.13 on NvInferVersion.h defines NV_TENSORRT_MAJOR through another macro (TRT_MAJOR_ENTERPRISE),
// which reading the header's text would miss. TensorRT 8.5 and older have no ILoggerFinder and no
// IPluginRegistry::loadLibrary, so they cannot load a library like this one.
#if NV_TENSORRT_MAJOR >= 10
#define SELD_PLUGIN_V3 1
#elif NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR >= 6
#define SELD_PLUGIN_V3 0
#else
#error "the SelectiveScan plugin needs TensorRT 8.6 or later headers (setLoggerFinder, load_library)"
#endif

//! The library's entry points (getCreators or getPluginCreators, setLoggerFinder): everything else is hidden.
//! TensorRT's own TENSORRTAPI exports only when building TensorRT itself.
#define SELD_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace seld
{
namespace plugin
{

constexpr char const* kPluginName = "SelectiveScan";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "";

//! The node's setting attributes (README.md). Inputs: u, delta, A, B, C, delta_bias, [D_skip], [z].
struct ScanSettings
{
    int32_t dState{0};
    int32_t groups{1};
    int32_t deltaSoftplus{0};
    int32_t hasZ{0};
    int32_t hasD{0};

    int32_t nbInputs() const
    {
        return 6 + hasD + hasZ;
    }
};

//! The five attributes as kINT32 fields of one value each, in getFieldNames order; `settings` null gives the
//! name-only list the creators advertise, otherwise the fields point into *settings (for serialisation).
std::vector<nvinfer1::PluginField> settingFields(ScanSettings* settings);

//! The name-only field list both creators advertise through getFieldNames.
class FieldNames
{
public:
    FieldNames();
    FieldNames(FieldNames const&) = delete;
    FieldNames& operator=(FieldNames const&) = delete;

    nvinfer1::PluginFieldCollection const* collection() const
    {
        return &mCollection;
    }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mCollection{};
};

//! Reads the fields the ONNX parser (or a serialised engine) passes; throws std::invalid_argument with a one-line
//! reason on a missing, mistyped or out-of-range field.
ScanSettings settingsFromFields(nvinfer1::PluginFieldCollection const* fc);

//! Linear layouts only; u, delta, B, C, z and y all float32 or all float16; A, delta_bias, D_skip float32.
//! pos counts the inputs then the output (pos nbInputs()), as TensorRT's supportsFormatCombination does.
bool supportsTensorFormat(ScanSettings const& settings, int32_t pos, nvinfer1::PluginTensorDesc const& desc,
    nvinfer1::DataType uType);

//! nullptr when the inputs' shapes agree with the settings and with each other (unknown dims, -1, pass),
//! otherwise a one-line reason.
char const* checkInputDims(ScanSettings const& settings, nvinfer1::Dims const* dims, int32_t nbInputs);

//! checkInputDims on TensorRT's descriptors (build time: DynamicPluginTensorDesc, run time: PluginTensorDesc);
//! 0 when they agree, otherwise logs the reason and returns -1.
int32_t checkInputs(ScanSettings const& settings, nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs);
int32_t checkInputs(ScanSettings const& settings, nvinfer1::PluginTensorDesc const* in, int32_t nbInputs);

//! The kernel call for concrete input descriptors and device pointers.
ScanParams paramsFor(ScanSettings const& settings, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* y);

//! Workspace enough for every u shape up to uMax = (batch, D, L), the largest the engine allows.
size_t workspaceFor(ScanSettings const& settings, nvinfer1::Dims const& uMax);

//! Runs one scan (the workspace holds workspaceFor the engine's largest shape); 0 on success, otherwise logs
//! why and returns -1 (TensorRT's enqueue convention).
int32_t enqueueScan(ScanSettings const& settings, nvinfer1::PluginTensorDesc const* inputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream);

//! Logs through the logger TensorRT handed to the library (setLoggerFinder); silent before that.
void logError(char const* message);

} // namespace plugin
} // namespace seld
