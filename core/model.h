#pragma once
// Models are data: a ModelConfig names a registered builder ("mlp", "cnn", or a user's own) and
// its sizes. Model owns the network and the parameter arena.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/layers/layers.h"

namespace dtrain {

// What a model's input is, as its builder declares it: the trainer shapes batches by it and the
// exporter types the ONNX input by it.
enum class InputLayout {
  features,  // the samples as the dataset stores them (f32, or u8 scaled in the graph)
  images,    // [C, H, W]; a dataset of plain [H, W] images is fed as [1, H, W]
  tokens,    // integer ids (INT64 in an exported model)
};

struct ModelConfig {
  std::string type = "mlp";
  Shape input_shape{1, 28, 28};  // per sample, without the batch dim
  int64_t num_classes = 10;
  std::vector<int64_t> hidden{256, 128};  // mlp hidden sizes
  float dropout = 0.0f;                   // mlp: dropout after each hidden activation
  std::string activation = "relu";        // mlp: relu | gelu
  // gpt: n_layer blocks of n_head heads, n_embd wide, over at most ctx tokens of a vocabulary of
  // vocab (0: the training data's vocab_size; the model's classes are its vocabulary)
  int64_t n_layer = 4, n_head = 4, n_embd = 128, ctx = 128, vocab = 0;
  std::map<std::string, std::string> extra;  // free-form keys for user-registered models
  // A stable text form of every field (for the signature and the config hash).
  std::string canonical() const;
};

class Model {
 public:
  Model(ModelConfig config, std::unique_ptr<Sequential> net, InputLayout input_layout = InputLayout::features);
  // Registers the parameters and allocates the arenas on `device`; init uses
  // the stream (seed, rank 0, RngPurpose::init) so every rank starts identical.
  void build(Device device, uint64_t seed);
  Tensor forward(const Tensor& x, PassContext& ctx) { return net_->forward(x, ctx); }
  Tensor backward(const Tensor& dy, PassContext& ctx) { return net_->backward(dy, ctx); }

  const ModelConfig& config() const { return config_; }
  InputLayout input_layout() const { return input_layout_; }
  Sequential& net() { return *net_; }
  ParameterArena& arena() { return arena_; }
  const std::vector<Parameter*>& parameters() const { return arena_.parameters(); }
  Shape output_shape(int64_t batch) const;
  // One line per parameter "name dtype shape" plus the config hash: ranks and checkpoints compare it.
  std::vector<std::string> signature() const;

 private:
  ModelConfig config_;
  std::unique_ptr<Sequential> net_;
  InputLayout input_layout_;
  ParameterArena arena_;
};

using ModelBuilder = std::function<std::unique_ptr<Sequential>(const ModelConfig&)>;

// The model registry: "mlp" (features), "cnn" (images) and "gpt" (tokens) are built in; users add their own before
// creating. The builder declares its input layout with it.
void register_model(const std::string& type, ModelBuilder builder, InputLayout input_layout = InputLayout::features);
std::vector<std::string> registered_models();
// The input layout registered for `type` (throws naming the type and the known ones).
InputLayout model_input_layout(const std::string& type);
// Builds the network for config.type (throws naming the type and the known ones).
std::unique_ptr<Model> create_model(const ModelConfig& config);

}  // namespace dtrain
