// SelectiveScan as a TensorRT 8.6 IPluginV2DynamicExt (JetPack 6.0) and its creator. Compiled instead of plugin_v3
// when the TensorRT headers are 8.6 (SELD_PLUGIN_V3, plugin_common.h); the same settings, checks and launcher.
#pragma once

#include "plugin_common.h"

#include <string>
#include <vector>

// TensorRT 8.6 marks IPluginV2 deprecated, yet IPluginV2DynamicExt (derived from it) is the only dynamic-shape
// plugin interface 8.x has: this file and plugin_v2.cpp exist to implement it, so the warning says nothing here.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace seld
{
namespace plugin
{

class SelectiveScanPluginV2 : public nvinfer1::IPluginV2DynamicExt
{
public:
    explicit SelectiveScanPluginV2(ScanSettings const& settings);

    // IPluginV2DynamicExt
    nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;
    void configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    // IPluginV2Ext
    nvinfer1::DataType getOutputDataType(
        int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    // IPluginV2
    char const* getPluginType() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    int32_t getNbOutputs() const noexcept override;
    int32_t initialize() noexcept override;
    void terminate() noexcept override;
    size_t getSerializationSize() const noexcept override;
    void serialize(void* buffer) const noexcept override;
    void destroy() noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    ScanSettings mSettings;
    size_t mWorkspaceSize{0};
    std::string mNamespace{kPluginNamespace};
};

class SelectiveScanCreatorV2 : public nvinfer1::IPluginCreator
{
public:

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV2* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(
        char const* name, void const* serialData, size_t serialLength) noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    FieldNames mFieldNames;
    std::string mNamespace{kPluginNamespace};
};

} // namespace plugin
} // namespace seld

#pragma GCC diagnostic pop
