#include "core/model.h"

#include <cmath>
#include <mutex>
#include <sstream>

namespace dtrain {

std::string ModelConfig::canonical() const {
  std::ostringstream os;
  os << "type=" << type << ";input=" << input_shape.str() << ";classes=" << num_classes << ";hidden=";
  for (size_t i = 0; i < hidden.size(); ++i) os << (i ? "," : "") << hidden[i];
  os << ";dropout=" << dropout << ";activation=" << activation;
  if (type == "gpt")  // (the other models' hashes stay as they were before the gpt existed)
    os << ";n_layer=" << n_layer << ";n_head=" << n_head << ";n_embd=" << n_embd << ";ctx=" << ctx;
  for (const auto& [k, v] : extra) os << ";" << k << "=" << v;
  return os.str();
}

Model::Model(ModelConfig config, std::unique_ptr<Sequential> net, InputLayout input_layout)
    : config_(std::move(config)), net_(std::move(net)), input_layout_(input_layout) {
  DTRAIN_CHECK(net_ != nullptr, "model '", config_.type, "': builder returned no network");
}

void Model::build(Device device, uint64_t seed) {
  net_->register_parameters(arena_, "");
  Generator gen(RngKey{seed, 0, static_cast<uint32_t>(RngPurpose::init)});
  arena_.allocate(device, gen);
}

Shape Model::output_shape(int64_t batch) const {
  Shape in{batch};
  for (int64_t d : config_.input_shape) in.push_back(d);
  return net_->output_shape(in);
}

std::vector<std::string> Model::signature() const {
  std::vector<std::string> sig;
  sig.push_back("config " + config_.canonical());
  for (const Parameter* p : arena_.parameters()) sig.push_back(p->name + " f32 " + p->shape.str());
  return sig;
}

namespace {

std::unique_ptr<Module> make_activation(const std::string& name) {
  if (name == "relu") return std::make_unique<ReLU>();
  if (name == "gelu") return std::make_unique<GELU>();
  fail("model.activation: unknown activation '", name, "' (expected relu or gelu)");
}

// Flatten -> [Linear -> act (-> Dropout)] per hidden size -> Linear(num_classes).
std::unique_ptr<Sequential> build_mlp(const ModelConfig& c) {
  auto net = std::make_unique<Sequential>();
  net->emplace<Flatten>();
  int64_t in = c.input_shape.numel();
  for (int64_t h : c.hidden) {
    DTRAIN_CHECK(h > 0, "model.hidden: sizes must be positive, got ", h);
    net->emplace<Linear>(in, h);
    net->add(make_activation(c.activation));
    if (c.dropout > 0) net->emplace<Dropout>(c.dropout);
    in = h;
  }
  net->emplace<Linear>(in, c.num_classes);
  return net;
}

// conv32-pool-conv64-pool-fc128-fc(num_classes), 3x3 convs with padding 1 (the Fashion-MNIST CNN).
std::unique_ptr<Sequential> build_cnn(const ModelConfig& c) {
  DTRAIN_CHECK(c.input_shape.size() == 3, "model cnn: input_shape must be C,H,W, got ", c.input_shape.str());
  const int64_t ch = c.input_shape[0], h = c.input_shape[1], w = c.input_shape[2];
  DTRAIN_CHECK(h % 4 == 0 && w % 4 == 0, "model cnn: input height and width must be multiples of 4, got ",
               c.input_shape.str());
  auto net = std::make_unique<Sequential>();
  net->emplace<Conv2d>(ch, 32, 3, 1, 1).emplace<ReLU>().emplace<MaxPool2d>(2);
  net->emplace<Conv2d>(32, 64, 3, 1, 1).emplace<ReLU>().emplace<MaxPool2d>(2);
  net->emplace<Flatten>().emplace<Linear>(64 * (h / 4) * (w / 4), 128).add(make_activation(c.activation));
  if (c.dropout > 0) net->emplace<Dropout>(c.dropout);
  net->emplace<Linear>(128, c.num_classes);
  return net;
}

// GPT-2 (pre-LayerNorm): token + position embeddings, n_layer blocks of
//   x += proj(attention(qkv(LayerNorm(x))));  x += fc2(GELU_tanh(fc1(LayerNorm(x))))   (fc1: C -> 4C)
// then a final LayerNorm and the output head tied to the token embedding. Linear weights start
// N(0, 0.02^2), the projections back into the residual stream N(0, 0.02^2 / (2 n_layer)).
std::unique_ptr<Sequential> build_gpt(const ModelConfig& c) {
  const int64_t width = c.n_embd, heads = c.n_head;
  DTRAIN_CHECK(c.n_layer > 0, "model.n_layer: must be positive, got ", c.n_layer);
  DTRAIN_CHECK(heads > 0 && width > 0 && width % heads == 0, "model.n_embd: ", width,
               " must be a positive multiple of model.n_head (", heads, ")");
  DTRAIN_CHECK(c.ctx > 0, "model.ctx: must be positive, got ", c.ctx);
  const float std = 0.02f, residual_std = std / std::sqrt(2.0f * static_cast<float>(c.n_layer));
  auto net = std::make_unique<Sequential>();
  auto embedding = std::make_unique<TokenPositionEmbedding>(c.num_classes, c.ctx, width);
  const TokenPositionEmbedding& tokens = *embedding;
  net->add(std::move(embedding));
  if (c.dropout > 0) net->emplace<Dropout>(c.dropout);
  for (int64_t layer = 0; layer < c.n_layer; ++layer) {
    auto attention = std::make_unique<Sequential>();
    attention->emplace<LayerNorm>(width).emplace<Linear>(width, 3 * width, true, std);
    attention->emplace<CausalSelfAttention>(width, heads).emplace<Linear>(width, width, true, residual_std);
    if (c.dropout > 0) attention->emplace<Dropout>(c.dropout);
    auto mlp = std::make_unique<Sequential>();
    mlp->emplace<LayerNorm>(width).emplace<Linear>(width, 4 * width, true, std).emplace<GELU>(true);
    mlp->emplace<Linear>(4 * width, width, true, residual_std);
    if (c.dropout > 0) mlp->emplace<Dropout>(c.dropout);
    net->emplace<Residual>(std::move(attention)).emplace<Residual>(std::move(mlp));
  }
  net->emplace<LayerNorm>(width).emplace<TiedLinear>(tokens);
  return net;
}

struct Registered {
  ModelBuilder build;
  InputLayout input_layout;
};

struct Registry {
  std::mutex mu;  // guards models
  std::map<std::string, Registered> models{{"mlp", {build_mlp, InputLayout::features}},
                                           {"cnn", {build_cnn, InputLayout::images}},
                                           {"gpt", {build_gpt, InputLayout::tokens}}};
};
Registry& registry() {
  static Registry r;
  return r;
}

// The registration of `type`, or an error naming it and the registered ones.
Registered find_model(const std::string& type) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  auto it = r.models.find(type);
  if (it == r.models.end()) {
    std::string known;
    for (const auto& [k, v] : r.models) known += (known.empty() ? "" : ", ") + k;
    fail("model.type: unknown model '", type, "' (registered: ", known, ")");
  }
  return it->second;
}

}  // namespace

void register_model(const std::string& type, ModelBuilder builder, InputLayout input_layout) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  DTRAIN_CHECK(!r.models.count(type), "model type '", type, "' is already registered");
  r.models[type] = {std::move(builder), input_layout};
}

std::vector<std::string> registered_models() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (const auto& [k, v] : r.models) names.push_back(k);
  return names;
}

InputLayout model_input_layout(const std::string& type) { return find_model(type).input_layout; }

std::unique_ptr<Model> create_model(const ModelConfig& config) {
  const Registered model = find_model(config.type);
  DTRAIN_CHECK(config.num_classes > 0, "model.num_classes must be positive, got ", config.num_classes);
  return std::make_unique<Model>(config, model.build(config), model.input_layout);
}

}  // namespace dtrain
