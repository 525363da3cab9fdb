// Embedding: y[i, :] = W[ids[i], :]; dW[ids[i], :] += dy[i, :]. Ids get no gradient.
#include <algorithm>
#include <string>

#include "core/cpu/parallel.h"
#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- its CPU kernels (declared in core/kernel_list.inc; core/cuda/embedding.cu has the CUDA ones)
// The lookup (split over rows) and its scatter-add gradient (split over the embedding dim, so each
// table element is accumulated by one range, in the order of the ids).
namespace cpu {

void embedding_forward(const int64_t* ids, const float* table, float* y, int64_t n, int64_t dim) {
  parallel_for(n, row_grain(dim), [=](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) std::copy_n(table + ids[i] * dim, dim, y + i * dim);
  });
}

void embedding_backward(const int64_t* ids, const float* dy, float* dtable, int64_t n, int64_t dim) {
  parallel_for(dim, row_grain(n), [=](int64_t begin, int64_t end) {
    for (int64_t i = 0; i < n; ++i) {
      float* row = dtable + ids[i] * dim;
      const float* g = dy + i * dim;
      for (int64_t j = begin; j < end; ++j) row[j] += g[j];
    }
  });
}

}  // namespace cpu

// ---- the layer

namespace {
std::string describe(const Embedding& m) {
  return "Embedding(" + std::to_string(m.vocab()) + ", " + std::to_string(m.dim()) + ")";
}
}  // namespace

Embedding::Embedding(int64_t vocab, int64_t dim, float init_std) : vocab_(vocab), dim_(dim), init_std_(init_std) {
  DTRAIN_CHECK(vocab_ > 0 && dim_ > 0, describe(*this), ": vocab and dim must be positive");
}

void Embedding::register_parameters(ParameterArena& arena, const std::string& prefix) {
  weight_ = &arena.add(prefix + "weight", Shape{vocab_, dim_}, layers::normal_init(0.0f, init_std_), false);
}

std::vector<Parameter*> Embedding::parameters() const {
  if (!weight_) return {};
  return {weight_};
}

Shape Embedding::output_shape(const Shape& input) const {
  Shape out = input;
  DTRAIN_CHECK(out.size() < Shape::kMaxDims, describe(*this), ": input shape ", input.str(), " has too many dims");
  out.push_back(dim_);
  return out;
}

Tensor Embedding::forward(const Tensor& ids, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(ids, name, DType::i64);
  layers::check_param(ids, weight_, name);
  layers::check_ids(ids, vocab_, name);
  Tensor y = Tensor::empty(output_shape(ids.shape()), DType::f32, ids.device());
  DTRAIN_DISPATCH(ids.device(), embedding_forward, ids.data<int64_t>(), weight_->value.data<float>(), y.data<float>(),
                  ids.numel(), dim_);
  ids_ = ids;
  return y;
}

Tensor Embedding::backward(const Tensor& dy, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_forwarded(ids_.defined(), name);
  layers::check_grad(dy, output_shape(ids_.shape()), name);
  DTRAIN_DISPATCH(dy.device(), embedding_backward, ids_.data<int64_t>(), dy.data<float>(), weight_->grad.data<float>(),
                  ids_.numel(), dim_);
  ctx.grad_ready(*weight_);
  return Tensor();
}

// ONNX: Gather of the ids' rows of the table.
std::string Embedding::to_onnx(OnnxGraph& g, const std::string& ids, const Shape& input,
                               const std::string& path) const {
  (void)input;
  return g.node("Gather", path, {g.weight(*weight_), ids}, {{"axis", int64_t{0}}});
}

}  // namespace dtrain
