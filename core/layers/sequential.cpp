// Sequential: forward runs the children in order, backward in reverse (so parameter gradients
// become ready in reverse registration order).
#include <span>
#include <string>
#include <vector>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

Sequential& Sequential::add(std::unique_ptr<Module> m) {
  DTRAIN_CHECK(m != nullptr, "Sequential: add(nullptr) at index ", children_.size());
  children_.push_back(std::move(m));
  return *this;
}

void Sequential::register_parameters(ParameterArena& arena, const std::string& prefix) {
  for (size_t i = 0; i < children_.size(); ++i)
    children_[i]->register_parameters(arena, prefix + std::to_string(i) + ".");
}

Shape Sequential::output_shape(const Shape& input) const {
  Shape s = input;
  for (const auto& c : children_) s = c->output_shape(s);
  return s;
}

Tensor Sequential::forward(const Tensor& x, PassContext& ctx) {
  Tensor y = x;
  ran_.clear();
  for (size_t i = 0; i < children_.size(); ++i) {
    const size_t fused = children_[i]->fuse(std::span(children_).subspan(i + 1), y, ctx);
    if (ctx.arena && ctx.arena->has_value_needed_hook())  // ZeRO-1: their values may still be in flight
      for (size_t j = i; j <= i + fused; ++j)
        for (const Parameter* p : children_[j]->parameters()) ctx.arena->value_needed(*p);
    y = children_[i]->forward(y, ctx);
    ran_.push_back(i);
    i += fused;  // the siblings it took ran inside its forward
  }
  return y;
}

Tensor Sequential::backward(const Tensor& dy, PassContext& ctx) {
  // Child i's input gradient matters when ours does or when an earlier child has parameters.
  // Without either, the children before it need no backward at all: stop there (what is
  // returned then may be undefined, which a caller that set input_grad = false ignores).
  layers::check_forwarded(!ran_.empty() || children_.empty(), "Sequential");
  const bool input_grad = ctx.input_grad;
  std::vector<char> needed(children_.size());
  bool any = input_grad;
  for (size_t i = 0; i < children_.size(); ++i) {
    needed[i] = any;
    any = any || !children_[i]->parameters().empty();
  }
  Tensor g = dy;
  for (size_t r = ran_.size(); r-- > 0;) {  // the children the last forward ran (fused ones took the rest)
    const size_t i = ran_[r];
    ctx.input_grad = needed[i] != 0;
    g = children_[i]->backward(g, ctx);
    if (!needed[i]) break;
  }
  ctx.input_grad = input_grad;
  return g;
}

std::vector<Parameter*> Sequential::parameters() const {
  std::vector<Parameter*> ps;
  for (const auto& c : children_)
    for (Parameter* p : c->parameters()) ps.push_back(p);
  return ps;
}

// ONNX: the children's mappings in order; child i is named "<path>.i" ("i" at the root).
std::string Sequential::to_onnx(OnnxGraph& g, const std::string& x, const Shape& input, const std::string& path) const {
  std::string y = x;
  Shape shape = input;
  for (size_t i = 0; i < children_.size(); ++i) {
    y = children_[i]->to_onnx(g, y, shape, path.empty() ? std::to_string(i) : path + "." + std::to_string(i));
    shape = children_[i]->output_shape(shape);
  }
  return y;
}

}  // namespace dtrain
