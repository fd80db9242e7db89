// Compiled into the library only against TensorRT 8.6 headers (SELD_PLUGIN_V3 is 0, plugin_common.h).
#include "plugin_common.h"
#if !SELD_PLUGIN_V3

#include "plugin_v2.h"

#include <cstring>
#include <exception>

// See plugin_v2.h: implementing IPluginV2DynamicExt means naming the deprecated IPluginV2.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

using namespace nvinfer1;

namespace seld
{
namespace plugin
{
namespace
{

// A serialised plugin is its five settings as int32 values, in field order.
constexpr size_t kSerialSize = 5 * sizeof(int32_t);

} // namespace

SelectiveScanPluginV2::SelectiveScanPluginV2(ScanSettings const& settings)
    : mSettings(settings)
{
}

IPluginV2DynamicExt* SelectiveScanPluginV2::clone() const noexcept
{
    try
    {
        auto* copy = new SelectiveScanPluginV2(mSettings);
        copy->mWorkspaceSize = mWorkspaceSize;
        copy->setPluginNamespace(mNamespace.c_str());
        return copy;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

DimsExprs SelectiveScanPluginV2::getOutputDimensions(
    int32_t, DimsExprs const* inputs, int32_t, IExprBuilder&) noexcept
{
    return inputs[0]; // y has u's shape
}

bool SelectiveScanPluginV2::supportsFormatCombination(
    int32_t pos, PluginTensorDesc const* inOut, int32_t, int32_t) noexcept
{
    return supportsTensorFormat(mSettings, pos, inOut[pos], inOut[0].type);
}

void SelectiveScanPluginV2::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t) noexcept
{
    checkInputs(mSettings, in, nbInputs); // TensorRT 8.x takes no status here: the log says what is wrong
    mWorkspaceSize = workspaceFor(mSettings, in[0].max);
}

// TensorRT 8.x asks with the concrete shapes of one call; the bound from configurePlugin covers the profile.
size_t SelectiveScanPluginV2::getWorkspaceSize(
    PluginTensorDesc const* inputs, int32_t, PluginTensorDesc const*, int32_t) const noexcept
{
    size_t const call = workspaceFor(mSettings, inputs[0].dims);
    return call > mWorkspaceSize ? call : mWorkspaceSize;
}

int32_t SelectiveScanPluginV2::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return enqueueScan(mSettings, inputDesc, inputs, outputs, workspace, stream);
}

DataType SelectiveScanPluginV2::getOutputDataType(int32_t, DataType const* inputTypes, int32_t) const noexcept
{
    return inputTypes[0];
}

char const* SelectiveScanPluginV2::getPluginType() const noexcept
{
    return kPluginName;
}

char const* SelectiveScanPluginV2::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

int32_t SelectiveScanPluginV2::getNbOutputs() const noexcept
{
    return 1;
}

int32_t SelectiveScanPluginV2::initialize() noexcept
{
    return 0;
}

void SelectiveScanPluginV2::terminate() noexcept {}

size_t SelectiveScanPluginV2::getSerializationSize() const noexcept
{
    return kSerialSize;
}

void SelectiveScanPluginV2::serialize(void* buffer) const noexcept
{
    int32_t const values[] = {mSettings.dState, mSettings.groups, mSettings.deltaSoftplus, mSettings.hasZ,
        mSettings.hasD};
    std::memcpy(buffer, values, kSerialSize);
}

void SelectiveScanPluginV2::destroy() noexcept
{
    delete this;
}

void SelectiveScanPluginV2::setPluginNamespace(char const* pluginNamespace) noexcept
{
    mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
}

char const* SelectiveScanPluginV2::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

char const* SelectiveScanCreatorV2::getPluginName() const noexcept
{
    return kPluginName;
}

char const* SelectiveScanCreatorV2::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

PluginFieldCollection const* SelectiveScanCreatorV2::getFieldNames() noexcept
{
    return mFieldNames.collection();
}

IPluginV2* SelectiveScanCreatorV2::createPlugin(char const*, PluginFieldCollection const* fc) noexcept
{
    try
    {
        auto* plugin = new SelectiveScanPluginV2(settingsFromFields(fc));
        plugin->setPluginNamespace(mNamespace.c_str());
        return plugin;
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

// Deserialisation goes through the same field checks as the ONNX parser's attributes.
IPluginV2* SelectiveScanCreatorV2::deserializePlugin(char const* name, void const* serialData, size_t serialLength) noexcept
{
    if (serialData == nullptr || serialLength != kSerialSize)
    {
        logError("SelectiveScan: serialised plugin has the wrong size (built by another plugin version?)");
        return nullptr;
    }
    ScanSettings settings;
    std::vector<PluginField> fields = settingFields(&settings);
    int32_t values[5];
    std::memcpy(values, serialData, kSerialSize);
    for (size_t i = 0; i < fields.size(); ++i)
    {
        fields[i].data = &values[i];
    }
    PluginFieldCollection const fc{static_cast<int32_t>(fields.size()), fields.data()};
    return createPlugin(name, &fc);
}

void SelectiveScanCreatorV2::setPluginNamespace(char const* pluginNamespace) noexcept
{
    mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
}

char const* SelectiveScanCreatorV2::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

} // namespace plugin
} // namespace seld

//! TensorRT 8.6 finds the creators of a plugin library through this symbol.
SELD_PLUGIN_EXPORT nvinfer1::IPluginCreator* const* getPluginCreators(int32_t& nbCreators)
{
    static seld::plugin::SelectiveScanCreatorV2 creator;
    static nvinfer1::IPluginCreator* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}

#pragma GCC diagnostic pop

#endif // !SELD_PLUGIN_V3
