#include "plugin_common.h"

#include <cstring>
#include <mutex>
#include <stdexcept>
#include <string>

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;

namespace seld
{
namespace plugin
{
namespace
{

char const* const kFieldNames[] = {"d_state", "groups", "delta_softplus", "has_z", "has_D"};

int32_t* fieldOf(ScanSettings& settings, int32_t index)
{
    int32_t* const slots[] = {&settings.dState, &settings.groups, &settings.deltaSoftplus, &settings.hasZ,
        &settings.hasD};
    return slots[index];
}

// Input positions of the node (README.md); D_skip and z move up when absent.
constexpr int32_t kU = 0;
constexpr int32_t kDelta = 1;
constexpr int32_t kA = 2;
constexpr int32_t kB = 3;
constexpr int32_t kC = 4;
constexpr int32_t kDeltaBias = 5;
constexpr int32_t kFirstOptional = 6;

int32_t zIndex(ScanSettings const& settings)
{
    return settings.hasZ ? kFirstOptional + settings.hasD : -1;
}

bool isFloat32Only(ScanSettings const& settings, int32_t pos)
{
    return pos == kA || pos == kDeltaBias || (settings.hasD && pos == kFirstOptional);
}

//! Equal, or one of them not known yet (-1 at build time).
bool agree(int64_t a, int64_t b)
{
    return a < 0 || b < 0 || a == b;
}

std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};

} // namespace

std::vector<PluginField> settingFields(ScanSettings* settings)
{
    std::vector<PluginField> fields;
    for (int32_t i = 0; i < 5; ++i)
    {
        fields.emplace_back(kFieldNames[i], settings ? fieldOf(*settings, i) : nullptr, PluginFieldType::kINT32, 1);
    }
    return fields;
}

FieldNames::FieldNames()
    : mFields(settingFields(nullptr))
{
    mCollection.nbFields = static_cast<int32_t>(mFields.size());
    mCollection.fields = mFields.data();
}

ScanSettings settingsFromFields(PluginFieldCollection const* fc)
{
    if (fc == nullptr)
    {
        throw std::invalid_argument("SelectiveScan: no fields given");
    }
    ScanSettings settings;
    bool seen[5] = {false, false, false, false, false};
    for (int32_t f = 0; f < fc->nbFields; ++f)
    {
        PluginField const& field = fc->fields[f];
        for (int32_t i = 0; i < 5; ++i)
        {
            if (field.name == nullptr || std::strcmp(field.name, kFieldNames[i]) != 0)
            {
                continue;
            }
            if (field.type != PluginFieldType::kINT32 || field.length != 1 || field.data == nullptr)
            {
                throw std::invalid_argument(std::string("SelectiveScan: field ") + kFieldNames[i]
                    + " must be one INT32 value");
            }
            *fieldOf(settings, i) = *static_cast<int32_t const*>(field.data);
            seen[i] = true;
        }
    }
    for (int32_t i = 0; i < 5; ++i)
    {
        if (!seen[i])
        {
            throw std::invalid_argument(std::string("SelectiveScan: missing attribute ") + kFieldNames[i]);
        }
    }
    if (settings.dState < 1 || settings.dState > kMaxDState || settings.groups < 1)
    {
        throw std::invalid_argument("SelectiveScan: d_state must be 1..64 and groups positive");
    }
    for (int32_t flag : {settings.deltaSoftplus, settings.hasZ, settings.hasD})
    {
        if (flag != 0 && flag != 1)
        {
            throw std::invalid_argument("SelectiveScan: delta_softplus, has_z and has_D must be 0 or 1");
        }
    }
    return settings;
}

bool supportsTensorFormat(ScanSettings const& settings, int32_t pos, PluginTensorDesc const& desc, DataType uType)
{
    if (desc.format != nvinfer1::TensorFormat::kLINEAR)
    {
        return false;
    }
    if (isFloat32Only(settings, pos))
    {
        return desc.type == DataType::kFLOAT;
    }
    if (pos == kU)
    {
        return desc.type == DataType::kFLOAT || desc.type == DataType::kHALF;
    }
    return desc.type == uType; // delta, B, C, z and the output y

}

char const* checkInputDims(ScanSettings const& settings, Dims const* dims, int32_t nbInputs)
{
    if (nbInputs != settings.nbInputs())
    {
        return "SelectiveScan: the number of inputs does not match has_D and has_z";
    }
    Dims const& u = dims[kU];
    Dims const& a = dims[kA];
    if (u.nbDims != 3 || dims[kDelta].nbDims != 3 || a.nbDims != 2 || dims[kB].nbDims != 4
        || dims[kC].nbDims != 4 || dims[kDeltaBias].nbDims != 1)
    {
        return "SelectiveScan: u, delta (batch, D, L), A (D, N), B, C (batch, G, N, L), delta_bias (D,) expected";
    }
    int64_t const batch = u.d[0];
    int64_t const dim = u.d[1];
    int64_t const length = u.d[2];
    bool ok = agree(a.d[0], dim) && agree(a.d[1], settings.dState) && agree(dims[kDeltaBias].d[0], dim);
    for (int32_t i = 0; i < 3; ++i)
    {
        ok = ok && agree(dims[kDelta].d[i], u.d[i]);
    }
    for (int32_t pos : {kB, kC})
    {
        Dims const& bc = dims[pos];
        ok = ok && agree(bc.d[0], batch) && agree(bc.d[1], settings.groups) && agree(bc.d[2], settings.dState)
            && agree(bc.d[3], length);
    }
    if (settings.hasD)
    {
        ok = ok && dims[kFirstOptional].nbDims == 1 && agree(dims[kFirstOptional].d[0], dim);
    }
    if (settings.hasZ)
    {
        Dims const& z = dims[zIndex(settings)];
        ok = ok && z.nbDims == 3 && agree(z.d[0], batch) && agree(z.d[1], dim) && agree(z.d[2], length);
    }
    if (!ok)
    {
        return "SelectiveScan: input shapes disagree with each other or with d_state/groups";
    }
    if (dim >= 0 && dim % settings.groups != 0)
    {
        return "SelectiveScan: D is not divisible by groups";
    }
    return nullptr;
}

namespace
{

int32_t logIfDisagree(ScanSettings const& settings, std::vector<Dims> const& dims)
{
    char const* problem = checkInputDims(settings, dims.data(), static_cast<int32_t>(dims.size()));
    if (problem != nullptr)
    {
        logError(problem);
        return -1;
    }
    return 0;
}

} // namespace

int32_t checkInputs(ScanSettings const& settings, nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs)
{
    std::vector<Dims> dims;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims.push_back(in[i].desc.dims);
    }
    return logIfDisagree(settings, dims);
}

int32_t checkInputs(ScanSettings const& settings, PluginTensorDesc const* in, int32_t nbInputs)
{
    std::vector<Dims> dims;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims.push_back(in[i].dims);
    }
    return logIfDisagree(settings, dims);
}

ScanParams paramsFor(ScanSettings const& settings, PluginTensorDesc const* inputDesc, void const* const* inputs, void* y)
{
    ScanParams p{};
    p.batch = inputDesc[kU].dims.d[0];
    p.dim = inputDesc[kU].dims.d[1];
    p.length = inputDesc[kU].dims.d[2];
    p.dState = settings.dState;
    p.groups = settings.groups;
    p.deltaSoftplus = settings.deltaSoftplus;
    p.hasZ = settings.hasZ;
    p.hasD = settings.hasD;
    p.dtype = inputDesc[kU].type == DataType::kHALF ? kScanFloat16 : kScanFloat32;
    p.u = inputs[kU];
    p.delta = inputs[kDelta];
    p.A = static_cast<float const*>(inputs[kA]);
    p.B = inputs[kB];
    p.C = inputs[kC];
    p.deltaBias = static_cast<float const*>(inputs[kDeltaBias]);
    p.dSkip = settings.hasD ? static_cast<float const*>(inputs[kFirstOptional]) : nullptr;
    p.z = settings.hasZ ? inputs[zIndex(settings)] : nullptr;
    p.y = y;
    return p;
}

size_t workspaceFor(ScanSettings const& settings, Dims const& uMax)
{
    return scanWorkspaceBound(uMax.d[0], uMax.d[1], settings.dState, uMax.d[2]);
}

int32_t enqueueScan(ScanSettings const& settings, PluginTensorDesc const* inputDesc, void const* const* inputs,
    void* const* outputs, void* workspace, cudaStream_t stream)
{
    ScanParams const p = paramsFor(settings, inputDesc, inputs, outputs[0]);
    char const* invalid = checkScanParams(p);
    if (invalid != nullptr)
    {
        logError(invalid);
        return -1;
    }
    // TensorRT reserved workspaceFor the profile's largest shape, which bounds this call's need.
    cudaError_t const status
        = launchSelectiveScan(p, workspace, scanWorkspaceSize(p.batch, p.dim, p.dState, p.length), stream);
    if (status != cudaSuccess)
    {
        logError(cudaGetErrorString(status));
        return -1;
    }
    return 0;
}

void logError(char const* message)
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    nvinfer1::ILogger* logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
    if (logger != nullptr)
    {
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    }
}

} // namespace plugin
} // namespace seld

//! TensorRT calls this when it loads the library (load_library, trtexec --dynamicPlugins): the logger to use.
SELD_PLUGIN_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(seld::plugin::gLoggerMutex);
    if (seld::plugin::gLoggerFinder == nullptr)
    {
        seld::plugin::gLoggerFinder = finder;
    }
}
