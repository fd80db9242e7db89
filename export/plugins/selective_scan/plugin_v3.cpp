// Compiled into the library only against TensorRT 10 or later headers (SELD_PLUGIN_V3, plugin_common.h).
#include "plugin_common.h"
#if SELD_PLUGIN_V3

#include "plugin_v3.h"

#include <exception>

using namespace nvinfer1;

namespace seld
{
namespace plugin
{

SelectiveScanPlugin::SelectiveScanPlugin(ScanSettings const& settings)
    : mSettings(settings)
{
}

// The serialisation fields point into the object that owns them, so a copy rebuilds its own.
SelectiveScanPlugin::SelectiveScanPlugin(SelectiveScanPlugin const& other)
    : SelectiveScanPlugin(other.mSettings)
{
}

IPluginCapability* SelectiveScanPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* SelectiveScanPlugin::clone() noexcept
{
    try
    {
        return new SelectiveScanPlugin(*this);
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

char const* SelectiveScanPlugin::getPluginName() const noexcept
{
    return kPluginName;
}

char const* SelectiveScanPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SelectiveScanPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t SelectiveScanPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t SelectiveScanPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbOutputs != 1 || nbInputs != mSettings.nbInputs())
    {
        logError("SelectiveScan: the number of inputs does not match has_D and has_z");
        return -1;
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t SelectiveScanPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const*, int32_t,
    DimsExprs* outputs, int32_t nbOutputs, IExprBuilder&) noexcept
{
    if (nbOutputs != 1 || nbInputs != mSettings.nbInputs() || inputs[0].nbDims != 3)
    {
        logError("SelectiveScan: expected u of shape (batch, D, L) and one output");
        return -1;
    }
    outputs[0] = inputs[0]; // y has u's shape
    return 0;
}

bool SelectiveScanPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t, int32_t) noexcept
{
    return supportsTensorFormat(mSettings, pos, inOut[pos].desc, inOut[0].desc.type);
}

int32_t SelectiveScanPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const*, int32_t) noexcept
{
    return checkInputs(mSettings, in, nbInputs);
}

size_t SelectiveScanPlugin::getWorkspaceSize(
    DynamicPluginTensorDesc const* inputs, int32_t, DynamicPluginTensorDesc const*, int32_t) const noexcept
{
    return workspaceFor(mSettings, inputs[0].max);
}

int32_t SelectiveScanPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const*,
    int32_t) noexcept
{
    return checkInputs(mSettings, in, nbInputs);
}

int32_t SelectiveScanPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const*,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    return enqueueScan(mSettings, inputDesc, inputs, outputs, workspace, stream);
}

IPluginV3* SelectiveScanPlugin::attachToContext(IPluginResourceContext*) noexcept
{
    return clone();
}

PluginFieldCollection const* SelectiveScanPlugin::getFieldsToSerialize() noexcept
{
    mSerialFields = settingFields(&mSettings);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
}

char const* SelectiveScanCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* SelectiveScanCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SelectiveScanCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* SelectiveScanCreator::getFieldNames() noexcept
{
    return mFieldNames.collection();
}

// The same fields arrive from the ONNX parser (kBUILD) and from a serialised engine (kRUNTIME).
IPluginV3* SelectiveScanCreator::createPlugin(char const*, PluginFieldCollection const* fc, TensorRTPhase) noexcept
{
    try
    {
        return new SelectiveScanPlugin(settingsFromFields(fc));
    }
    catch (std::exception const& e)
    {
        logError(e.what());
    }
    return nullptr;
}

} // namespace plugin
} // namespace seld

//! TensorRT 10.x finds the creators of a plugin library through this symbol.
SELD_PLUGIN_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static seld::plugin::SelectiveScanCreator creator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}

#endif // SELD_PLUGIN_V3
