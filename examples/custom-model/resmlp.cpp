#include "resmlp.h"

#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model.h"
#include "core/ops.h"

namespace resmlp {
namespace {

using dtrain::Module;
using dtrain::Parameter;
using dtrain::ParameterArena;
using dtrain::PassContext;
using dtrain::Sequential;
using dtrain::Shape;
using dtrain::Tensor;

// y = x + body(x);  dx = dy + body'(dy).  The body must keep the shape of its input.
// Parameters are the body's, so checkpoints and ParamSync see them like any built-in layer's.
// ONNX: the body's nodes, then an Add of the input and the body's output.
class Residual : public Module {
 public:
  explicit Residual(std::unique_ptr<Sequential> body) : body_(std::move(body)) {}
  std::string type() const override { return "Residual"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override {
    body_->register_parameters(arena, prefix);
  }
  Shape output_shape(const Shape& input) const override {
    const Shape out = body_->output_shape(input);
    DTRAIN_CHECK(out == input, "Residual: body maps ", input.str(), " to ", out.str(), ", expected the same shape");
    return input;
  }
  Tensor forward(const Tensor& x, PassContext& ctx) override { return dtrain::ops::add(x, body_->forward(x, ctx)); }
  Tensor backward(const Tensor& dy, PassContext& ctx) override {
    return dtrain::ops::add(dy, body_->backward(dy, ctx));
  }
  std::vector<Parameter*> parameters() const override { return body_->parameters(); }
  std::string to_onnx(dtrain::OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override {
    return graph.node("Add", path, {x, body_->to_onnx(graph, x, input, path)});
  }

 private:
  std::unique_ptr<Sequential> body_;
};

// A positive integer from model.options, or `fallback` when the key is absent.
int64_t option(const dtrain::ModelConfig& c, const std::string& key, int64_t fallback) {
  const auto it = c.extra.find(key);
  if (it == c.extra.end()) return fallback;
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(it->second, &used);
  } catch (const std::exception&) {}
  DTRAIN_CHECK(used == it->second.size() && value > 0, "model.options: resmlp ", key, "='", it->second,
               "' is not a positive integer");
  return value;
}

std::unique_ptr<Module> activation(const dtrain::ModelConfig& c) {
  if (c.activation == "relu") return std::make_unique<dtrain::ReLU>();
  if (c.activation == "gelu") return std::make_unique<dtrain::GELU>();
  dtrain::fail("model.activation: resmlp supports relu or gelu, got '", c.activation, "'");
}

std::unique_ptr<Sequential> build(const dtrain::ModelConfig& c) {
  for (const auto& [key, value] : c.extra)
    DTRAIN_CHECK(key == "width" || key == "blocks", "model.options: resmlp has no option '", key,
                 "' (expected width, blocks)");
  const int64_t width = option(c, "width", 256), blocks = option(c, "blocks", 2);
  auto net = std::make_unique<Sequential>();
  net->emplace<dtrain::Flatten>().emplace<dtrain::Linear>(c.input_shape.numel(), width);
  for (int64_t b = 0; b < blocks; ++b) {
    auto body = std::make_unique<Sequential>();
    body->emplace<dtrain::LayerNorm>(width).emplace<dtrain::Linear>(width, width).add(activation(c));
    if (c.dropout > 0) body->emplace<dtrain::Dropout>(c.dropout);
    body->emplace<dtrain::Linear>(width, width);
    net->emplace<Residual>(std::move(body));
  }
  net->emplace<dtrain::LayerNorm>(width).emplace<dtrain::Linear>(width, c.num_classes);
  return net;
}

}  // namespace

void register_resmlp() { dtrain::register_model("resmlp", build); }

}  // namespace resmlp
