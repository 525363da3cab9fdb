// The transformer's parts besides attention (core/layers/attention.cpp):
//   Residual:               y = x + f(x);                  dx = dy + f'(dy)
//   TokenPositionEmbedding: y[n, t] = wte[ids[n, t]] + wpe[t]; dwte[ids] += dy; dwpe[t] += sum_n dy[n, t]
//   TiedLinear:             y = x wte^T;                   dwte += dy^T x; dx = dy wte
// Their ONNX mappings are in core/layers/transformer_onnx.cpp.
#include <string>

#include "core/layers/layer_util.h"
#include "core/layers/layers.h"

namespace dtrain {

// ---- Residual

Residual::Residual(std::unique_ptr<Sequential> body) : body_(std::move(body)) {
  DTRAIN_CHECK(body_ != nullptr, "Residual: no body");
}

void Residual::register_parameters(ParameterArena& arena, const std::string& prefix) {
  body_->register_parameters(arena, prefix);
}

std::vector<Parameter*> Residual::parameters() const { return body_->parameters(); }

Shape Residual::output_shape(const Shape& input) const {
  const Shape out = body_->output_shape(input);
  DTRAIN_CHECK(out == input, "Residual: its body maps ", input.str(), " to ", out.str(), "; a residual needs the same");
  return out;
}

Tensor Residual::forward(const Tensor& x, PassContext& ctx) {
  layers::check_input(x, "Residual");
  const Tensor fx = body_->forward(x, ctx);
  DTRAIN_CHECK(fx.shape() == x.shape(), "Residual: its body maps ", x.shape().str(), " to ", fx.shape().str());
  Tensor y = Tensor::empty(x.shape(), DType::f32, x.device());
  DTRAIN_DISPATCH(x.device(), add, x.data<float>(), fx.data<float>(), y.data<float>(), x.numel());
  return y;
}

Tensor Residual::backward(const Tensor& dy, PassContext& ctx) {
  const Tensor g = body_->backward(dy, ctx);
  if (!ctx.input_grad) return Tensor();
  layers::check_grad(g, dy.shape(), "Residual");
  Tensor dx = Tensor::empty(dy.shape(), DType::f32, dy.device());
  DTRAIN_DISPATCH(dy.device(), add, dy.data<float>(), g.data<float>(), dx.data<float>(), dy.numel());
  return dx;
}

// ---- TokenPositionEmbedding

namespace {
constexpr float kGptInitStd = 0.02f;  // GPT-2's initialisation of the embeddings

std::string describe(const TokenPositionEmbedding& m) {
  return "TokenPositionEmbedding(vocab " + std::to_string(m.vocab()) + ", ctx " + std::to_string(m.ctx()) + ", " +
         std::to_string(m.embd()) + ")";
}
}  // namespace

TokenPositionEmbedding::TokenPositionEmbedding(int64_t vocab, int64_t ctx, int64_t embd)
    : vocab_(vocab), ctx_(ctx), c_(embd) {
  DTRAIN_CHECK(vocab_ > 0 && ctx_ > 0 && c_ > 0, describe(*this), ": sizes must be positive");
}

void TokenPositionEmbedding::register_parameters(ParameterArena& arena, const std::string& prefix) {
  wte_ = &arena.add(prefix + "wte", Shape{vocab_, c_}, layers::normal_init(0.0f, kGptInitStd), false);
  wpe_ = &arena.add(prefix + "wpe", Shape{ctx_, c_}, layers::normal_init(0.0f, kGptInitStd), false);
}

std::vector<Parameter*> TokenPositionEmbedding::parameters() const {
  if (!wte_) return {};
  return {wte_, wpe_};
}

Shape TokenPositionEmbedding::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() == 2 && input[1] >= 1 && input[1] <= ctx_, describe(*this), ": input shape ", input.str(),
               ", expected [N, T] token ids with 1 <= T <= ", ctx_);
  return Shape{input[0], input[1], c_};
}

Tensor TokenPositionEmbedding::forward(const Tensor& ids, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(ids, name, DType::i64);
  const Shape out_shape = output_shape(ids.shape());
  layers::check_param(ids, wte_, name);
  layers::check_ids(ids, vocab_, name);
  const Device d = ids.device();
  const int64_t n = out_shape[0], t = out_shape[1];
  Tensor y = Tensor::empty(out_shape, DType::f32, d);
  DTRAIN_DISPATCH(d, embedding_forward, ids.data<int64_t>(), wte_->value.data<float>(), y.data<float>(), n * t, c_);
  // wpe's first t rows are [t * c] contiguous: one bias row per sample.
  DTRAIN_DISPATCH(d, add_bias_rows, y.data<float>(), wpe_->value.data<float>(), n, t * c_);
  ids_ = ids;
  return y;
}

Tensor TokenPositionEmbedding::backward(const Tensor& dy, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_forwarded(ids_.defined(), name);
  const Shape shape = output_shape(ids_.shape());
  layers::check_grad(dy, shape, name);
  const Device d = dy.device();
  const int64_t n = shape[0], t = shape[1];
  DTRAIN_DISPATCH(d, embedding_backward, ids_.data<int64_t>(), dy.data<float>(), wte_->grad.data<float>(), n * t, c_);
  DTRAIN_DISPATCH(d, sum_rows, dy.data<float>(), wpe_->grad.data<float>(), n, t * c_);
  // Reverse registration order, as the arena lays them out. wte's gradient also holds the tied
  // output head's, added earlier in this pass.
  ctx.grad_ready(*wpe_);
  ctx.grad_ready(*wte_);
  return Tensor();
}

// ---- TiedLinear

namespace {
std::string describe(const TiedLinear& m) {
  return "TiedLinear(" + std::to_string(m.embedding().embd()) + "->" + std::to_string(m.embedding().vocab()) + ")";
}
}  // namespace

Shape TiedLinear::output_shape(const Shape& input) const {
  DTRAIN_CHECK(input.size() >= 2 && input.back() == embedding_.embd(), describe(*this), ": input shape ", input.str(),
               ", expected last dim ", embedding_.embd());
  Shape out = input;
  out[out.size() - 1] = embedding_.vocab();
  return out;
}

Tensor TiedLinear::forward(const Tensor& x, PassContext& ctx) {
  (void)ctx;
  const std::string name = describe(*this);
  layers::check_input(x, name);
  const Shape out_shape = output_shape(x.shape());
  const Parameter* wte = embedding_.token_weight();
  layers::check_param(x, wte, name);
  const int64_t c = embedding_.embd(), v = embedding_.vocab(), rows = x.numel() / c;
  Tensor y = Tensor::empty(out_shape, DType::f32, x.device());
  DTRAIN_DISPATCH(x.device(), gemm, false, true, rows, v, c, 1.0f, x.data<float>(), c, wte->value.data<float>(), c,
                  0.0f, y.data<float>(), v);
  x_ = x;
  return y;
}

Tensor TiedLinear::backward(const Tensor& dy, PassContext& ctx) {
  const std::string name = describe(*this);
  layers::check_forwarded(x_.defined(), name);
  layers::check_grad(dy, output_shape(x_.shape()), name);
  const Parameter* wte = embedding_.token_weight();
  const Device d = x_.device();
  const int64_t c = embedding_.embd(), v = embedding_.vocab(), rows = x_.numel() / c;
  DTRAIN_DISPATCH(d, gemm, true, false, v, c, rows, 1.0f, dy.data<float>(), v, x_.data<float>(), c, 1.0f,
                  wte->grad.data<float>(), c);
  Tensor dx;
  if (ctx.input_grad) {
    dx = Tensor::empty(x_.shape(), DType::f32, d);
    DTRAIN_DISPATCH(d, gemm, false, false, rows, c, v, 1.0f, dy.data<float>(), v, wte->value.data<float>(), c, 0.0f,
                    dx.data<float>(), c);
  }
  return dx;
}

}  // namespace dtrain
