#pragma once
// The built-in layers. Each one's forward and backward live together in core/layers/<name>.cpp;
// the math is in a comment above each. Tensors are f32, NCHW for images, [N, features] otherwise.
#include <memory>
#include <vector>

#include "core/module.h"

namespace dtrain {

// y = x W^T + b, W [out, in], b [out]; x [N, in] (or [N, ...] flattened by the caller).
// init_std 0: PyTorch's U(-1/sqrt(in), 1/sqrt(in)) for W and b; > 0: W ~ N(0, init_std^2), b = 0
// (GPT-2's). The bias is left out of weight decay.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true, float init_std = 0.0f);
  std::string type() const override { return "Linear"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  std::vector<Parameter*> parameters() const override;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Parameter* weight() const { return weight_; }
  Parameter* bias() const { return bias_; }

 private:
  int64_t in_, out_;
  bool has_bias_;
  float init_std_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
  Tensor x_;
};

class ReLU : public Module {
 public:
  std::string type() const override { return "ReLU"; }
  Shape output_shape(const Shape& input) const override { return input; }
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;

 private:
  Tensor x_;
};

// Exact GELU: 0.5 x (1 + erf(x / sqrt 2)); with tanh_approximation GPT-2's
// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
class GELU : public Module {
 public:
  explicit GELU(bool tanh_approximation = false) : tanh_(tanh_approximation) {}
  std::string type() const override { return "GELU"; }
  bool tanh_approximation() const { return tanh_; }
  Shape output_shape(const Shape& input) const override { return input; }
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;

 private:
  bool tanh_;
  Tensor x_;
};

// x [N, C, H, W] -> [N, OC, OH, OW] by im2col + GEMM. W [OC, C, K, K], b [OC].
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
         bool bias = true);
  std::string type() const override { return "Conv2d"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  std::vector<Parameter*> parameters() const override;
  // Takes a ReLU after it, and a 2x2 stride-2 max-pool after that when the output's height and
  // width are even (CPU only): forward then returns the pooled output.
  size_t fuse(std::span<const std::unique_ptr<Module>> next, const Tensor& x, const PassContext& ctx) override;
  int64_t in_channels() const { return in_c_; }
  int64_t out_channels() const { return out_c_; }
  int64_t kernel() const { return k_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return pad_; }
  Parameter* weight() const { return weight_; }
  Parameter* bias() const { return bias_; }

 private:
  int64_t in_c_, out_c_, k_, stride_, pad_;
  bool has_bias_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
  Shape x_shape_;
  Tensor cols_;                  // im2col of the last input [C*K*K, N*OH*OW]
  Tensor y_cn_, dy_cn_, dcols_;  // workspaces reused across steps
  // The epilogue fuse() chose for the next forward / the last forward ran: 0 none, 1 ReLU,
  // 2 ReLU + 2x2 max-pool; mask_ holds that forward's window winners (u8, kDead when zeroed).
  int64_t epilogue_pool_ = 0, ran_pool_ = 0;
  Tensor mask_;
  Tensor gemm_forward(const Tensor& x, const Shape& ys);  // im2col + GEMM into y_cn_
  Tensor dy_to_cn(const Tensor& dy, const Shape& ys);     // dy -> dy_cn_ (+ the bias gradient)
};

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int64_t kernel, int64_t stride = 0 /* = kernel */, int64_t padding = 0);
  std::string type() const override { return "MaxPool2d"; }
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  int64_t kernel() const { return k_; }
  int64_t stride() const { return stride_; }
  int64_t padding() const { return pad_; }

 private:
  int64_t k_, stride_, pad_;
  Shape x_shape_;
  Tensor argmax_;
};

// [N, d1, d2, ...] -> [N, d1*d2*...]
class Flatten : public Module {
 public:
  std::string type() const override { return "Flatten"; }
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;

 private:
  Shape x_shape_;
};

// Inverted dropout: identity when not training.
class Dropout : public Module {
 public:
  explicit Dropout(float p);
  std::string type() const override { return "Dropout"; }
  Shape output_shape(const Shape& input) const override { return input; }
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  float p() const { return p_; }

 private:
  float p_;
  Tensor mask_;  // undefined when the last forward was not training
};

// Normalises the last dim: y = (x - mean) / sqrt(var + eps) * gamma + beta (left out of weight decay).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, float eps = 1e-5f);
  std::string type() const override { return "LayerNorm"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  std::vector<Parameter*> parameters() const override;
  int64_t dim() const { return dim_; }
  float eps() const { return eps_; }
  Parameter* weight() const { return weight_; }
  Parameter* bias() const { return bias_; }

 private:
  int64_t dim_;
  float eps_;
  Parameter* weight_ = nullptr;
  Parameter* bias_ = nullptr;
  Tensor x_, mean_, rstd_;
};

// ids (i64, any shape) -> [..., dim]; W [vocab, dim]. Backward returns an undefined tensor.
class Embedding : public Module {
 public:
  // The table starts N(0, init_std^2); its rows are left out of weight decay.
  Embedding(int64_t vocab, int64_t dim, float init_std = 1.0f);
  std::string type() const override { return "Embedding"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& ids, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  std::vector<Parameter*> parameters() const override;
  int64_t vocab() const { return vocab_; }
  int64_t dim() const { return dim_; }
  Parameter* weight() const { return weight_; }

 private:
  int64_t vocab_, dim_;
  float init_std_;
  Parameter* weight_ = nullptr;
  Tensor ids_;
};

// Runs its children in order; backward in reverse. Children are named by index ("0.", "1.", ...).
// Before a child's forward it tells the arena which parameters the child reads (value_needed).
class Sequential : public Module {
 public:
  Sequential() = default;
  Sequential& add(std::unique_ptr<Module> m);
  template <typename M, typename... Args>
  Sequential& emplace(Args&&... args) {
    return add(std::make_unique<M>(std::forward<Args>(args)...));
  }
  std::string type() const override { return "Sequential"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  std::vector<Parameter*> parameters() const override;
  const std::vector<std::unique_ptr<Module>>& children() const { return children_; }

 private:
  std::vector<std::unique_ptr<Module>> children_;
  std::vector<size_t> ran_;  // the children the last forward called (others were fused into them)
};

// ---- the transformer's parts (core/layers/attention.cpp, core/layers/transformer.cpp)

// Causal multi-head self-attention, the part without parameters: qkv [N, T, 3C] (q | k | v per
// position, head h in columns [h hd, (h+1) hd) of each, hd = C / heads) -> [N, T, C]:
// per head softmax(q k^T / sqrt(hd) + causal mask) v, heads side by side. The projections
// around it are Linear layers.
class CausalSelfAttention : public Module {
 public:
  CausalSelfAttention(int64_t embd, int64_t heads);
  std::string type() const override { return "CausalSelfAttention"; }
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& qkv, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  int64_t embd() const { return c_; }
  int64_t heads() const { return heads_; }
  int64_t head_dim() const { return c_ / heads_; }

 private:
  int64_t c_, heads_;
  Tensor qkv_, att_;  // the last training forward's input and softmax probabilities
  Tensor scratch_;    // backward's workspace, reused across steps
};

// y = x + body(x); dx = dy + body's dx. The body's parameters are named as its own ("<prefix>0.weight").
class Residual : public Module {
 public:
  explicit Residual(std::unique_ptr<Sequential> body);
  std::string type() const override { return "Residual"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  std::vector<Parameter*> parameters() const override;
  const Sequential& body() const { return *body_; }

 private:
  std::unique_ptr<Sequential> body_;
};

// Token and learned position embeddings: ids [N, T] (T <= ctx) -> [N, T, C],
// y[n, t] = wte[ids[n, t]] + wpe[t]. Both tables start N(0, 0.02^2) and are left out of weight decay.
class TokenPositionEmbedding : public Module {
 public:
  TokenPositionEmbedding(int64_t vocab, int64_t ctx, int64_t embd);
  std::string type() const override { return "TokenPositionEmbedding"; }
  void register_parameters(ParameterArena& arena, const std::string& prefix) override;
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& ids, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  std::vector<Parameter*> parameters() const override;
  int64_t vocab() const { return vocab_; }
  int64_t ctx() const { return ctx_; }
  int64_t embd() const { return c_; }
  Parameter* token_weight() const { return wte_; }     // [vocab, C], also the output head's
  Parameter* position_weight() const { return wpe_; }  // [ctx, C]

 private:
  int64_t vocab_, ctx_, c_;
  Parameter* wte_ = nullptr;
  Parameter* wpe_ = nullptr;
  Tensor ids_;
};

// The output head tied to a token embedding: logits [N, T, vocab] = x wte^T. It owns no
// parameters: its gradient adds into the embedding's table, whose backward (later in the pass)
// reports it ready.
class TiedLinear : public Module {
 public:
  explicit TiedLinear(const TokenPositionEmbedding& embedding) : embedding_(embedding) {}
  std::string type() const override { return "TiedLinear"; }
  Shape output_shape(const Shape& input) const override;
  Tensor forward(const Tensor& x, PassContext& ctx) override;
  Tensor backward(const Tensor& dy, PassContext& ctx) override;
  std::string to_onnx(OnnxGraph& graph, const std::string& x, const Shape& input,
                      const std::string& path) const override;
  const TokenPositionEmbedding& embedding() const { return embedding_; }

 private:
  const TokenPositionEmbedding& embedding_;
  Tensor x_;
};

}  // namespace dtrain
