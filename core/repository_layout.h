#pragma once
// The model repository layout that export/ writes and serve/ reads: REPO/NAME/config.json and one
// folder per version, REPO/NAME/<V>/model.onnx, V a decimal number without leading zeros.
#include <cstdint>
#include <string>
#include <vector>

namespace dtrain {

// "1", "2", "17" name versions; "0", "01", "v1", ".tmp-3-99" do not.
bool is_model_version_name(const std::string& name);
// The numeric version folders of REPO/NAME, ascending (empty when there are none).
std::vector<int64_t> list_model_versions(const std::string& repo, const std::string& name);

// A pipeline's version folder holds this instead of model.onnx: {"stages": [...]} (serve/pipeline.h).
constexpr const char* kPipelineFileName = "pipeline.json";

}  // namespace dtrain
