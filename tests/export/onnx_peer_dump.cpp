// The dtrain half of the onnxruntime peer check (onnx_peer_check.sh): exports the registry's mlp
// and cnn (f32 and int8, u8 inputs with the dataset's 1/255 scaling folded in) and the two test
// models that hold every core layer (f32 images, int64 ids), runs each file with dtrain's ONNX
// engine at batch 1 and batch 37, and writes the model, the inputs and dtrain's outputs as raw
// little-endian files plus cases.json for onnx_peer_check.js.
// mlp/cnn inputs: the Fashion-MNIST test images (IDX, as Debian's dataset-fashion-mnist ships
// them) when the path given exists, else random u8 images.
// With --gpt instead: a tiny random gpt's model.onnx and model_with_past.onnx, dtrain's engine and
// training-forward logits on random ids, a left-padded chain of cached calls and greedy
// continuations with and without the cache (gpt/ and gpt_cases.json).
// usage: onnx_peer_dump OUT_DIR [IDX_IMAGES]
//        onnx_peer_dump OUT_DIR --gpt
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/model.h"
#include "data/convert.h"
#include "data/dataset.h"
#include "data/h5.h"
#include "export/onnx_export.h"
#include "inference/onnx_engine.h"
#include "tests/export/onnx_test_models.h"

namespace {

using namespace dtrain;
namespace fs = std::filesystem;

constexpr int64_t kPixels = 28 * 28;
constexpr int64_t kBatch1Samples = 300;  // batch-1 runs are one session call each

void write_raw(const fs::path& path, const void* data, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  DTRAIN_CHECK(out.good(), "cannot write ", path.string());
}

std::vector<uint8_t> load_images(const std::string& idx_path, std::string& source) {
  if (!idx_path.empty() && fs::exists(idx_path)) {
    const data::IdxArray a = data::read_idx(idx_path);
    DTRAIN_CHECK(a.type == 0x08 && a.dims.size() == 3 && a.dims[1] == 28 && a.dims[2] == 28, idx_path,
                 ": expected u8 images [N, 28, 28]");
    source = idx_path;
    return a.data;
  }
  source = "random u8 images (no IDX file at '" + idx_path + "')";
  std::vector<uint8_t> v(static_cast<size_t>(2000 * kPixels));
  Generator g(RngKey{1234, 0, static_cast<uint32_t>(RngPurpose::test)});
  for (auto& x : v) x = static_cast<uint8_t>(g.below(256));
  return v;
}

const char* ort_type(DType t) {
  switch (t) {
    case DType::u8: return "uint8";
    case DType::i64: return "int64";
    default: return "float32";
  }
}

// Runs `engine` over the first `count` samples of `all` in batches of `batch` (the last one may be
// smaller) and writes the inputs and both outputs.
std::string run_batches(const OnnxModel& engine, const Tensor& all, int64_t count, int64_t batch, const fs::path& dir,
                        const std::string& tag) {
  std::vector<float> probs;
  std::vector<int64_t> classes;
  for (int64_t first = 0; first < count; first += batch) {
    const std::vector<Tensor> out = engine.run({all.slice(first, std::min(count, first + batch))});
    const std::vector<float> p = out[0].to_vector<float>();
    const std::vector<int64_t> c = out[1].to_vector<int64_t>();
    probs.insert(probs.end(), p.begin(), p.end());
    classes.insert(classes.end(), c.begin(), c.end());
  }
  const Tensor used = all.slice(0, count);
  write_raw(dir / ("input_" + tag + ".bin"), used.raw_data(), static_cast<size_t>(used.nbytes()));
  write_raw(dir / ("probabilities_" + tag + ".f32"), probs.data(), probs.size() * sizeof(float));
  write_raw(dir / ("class_" + tag + ".i64"), classes.data(), classes.size() * sizeof(int64_t));
  return "{\"batch\": " + std::to_string(batch) + ", \"count\": " + std::to_string(count) + ", \"input\": \"input_" +
         tag + ".bin\", \"probabilities\": \"probabilities_" + tag + ".f32\", \"class\": \"class_" + tag + ".i64\"}";
}

// Runs the model file `bytes` at batch 1 (up to kBatch1Samples) and 37 (all samples), and
// returns its cases.json entry.
std::string dump_case(const std::string& bytes, const std::string& quantize, const std::string& name,
                      const Tensor& samples, const fs::path& out) {
  const fs::path dir = out / name;
  fs::create_directories(dir);
  write_raw(dir / "model.onnx", bytes.data(), bytes.size());
  const OnnxModel engine = OnnxModel::from_bytes(bytes);
  const int64_t n = samples.dim(0), n1 = std::min(n, kBatch1Samples);
  const std::string b1 = run_batches(engine, samples, n1, 1, dir, "b1");
  const std::string b37 = run_batches(engine, samples, n, 37, dir, "b37");
  std::string shape;
  for (int i = 1; i < samples.ndim(); ++i) shape += ", " + std::to_string(samples.dim(i));
  std::printf("onnx_peer_dump: %s: %zu bytes, ran %lld samples at batch 1 and %lld at batch 37\n", name.c_str(),
              bytes.size(), static_cast<long long>(n1), static_cast<long long>(n));
  return "  {\"name\": \"" + name + "\", \"quantize\": \"" + quantize + "\", \"dir\": \"" + name +
         "\", \"input_type\": \"" + ort_type(samples.dtype()) + "\", \"sample_shape\": [" +
         (shape.empty() ? "" : shape.substr(2)) + "], \"bytes\": " + std::to_string(bytes.size()) + ", \"runs\": [" +
         b1 + ", " + b37 + "]}";
}

std::string dump_case(Model& model, const ExportOptions& options, const std::string& name, const Tensor& samples,
                      const fs::path& out) {
  return dump_case(export_onnx(model, options).bytes(), options.quantize, name, samples, out);
}

void write_cases(const fs::path& out, const std::vector<std::string>& cases) {
  std::string joined;
  for (const auto& c : cases) joined += (joined.empty() ? "" : ",\n") + c;
  std::ofstream(out / "cases.json") << "[\n" << joined << "\n]\n";
}

// An exported file (e.g. a model repository's) on the samples of a dataset's /x, as one case.
int dump_file(const fs::path& out, const std::string& model_path, const std::string& data_path,
              const std::string& quantize) {
  std::ifstream in(model_path, std::ios::binary);
  DTRAIN_CHECK(in.good(), "cannot read ", model_path);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const data::DatasetInfo info = data::inspect_dataset(data_path);
  const h5::File file = h5::File::open(data_path);
  Shape shape{info.size};
  for (int64_t d : info.sample_shape) shape.push_back(d);
  Tensor x = Tensor::empty(shape, info.x_dtype);
  file.dataset("/x").read_rows_raw(h5::native_type(info.x_dtype), x.raw_data(), static_cast<size_t>(x.numel()), 0,
                                   info.size);
  write_cases(out, {dump_case(bytes, quantize, "file", x, out)});
  return 0;
}

// ---- the gpt: model.onnx and model_with_past.onnx of a tiny random gpt (gpt_cases.json)

std::string json_ints(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return "[" + s + "]";
}

void write_tensor(const fs::path& path, const Tensor& t) {
  const Tensor host = t.device().is_cpu() ? t : t.to(Device::cpu());
  write_raw(path, host.raw_data(), static_cast<size_t>(host.nbytes()));
}

// model.onnx on random ids of each (batch, length): the ids, the engine's logits and the training
// forward's.
std::string dump_gpt_full_runs(Model& model, const OnnxModel& full, const fs::path& dir, Generator& g) {
  std::string runs;
  for (const auto& [batch, length] : {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {2, 80}}) {
    const std::string tag = std::to_string(batch) + "x" + std::to_string(length);
    const Tensor ids = test::random_ids(Shape{batch, length}, 256, g);
    const Tensor engine = full.run({ids})[0], forward = test::reference_logits(model, ids);
    write_tensor(dir / ("full_ids_" + tag + ".i64"), ids);
    write_tensor(dir / ("full_engine_" + tag + ".f32"), engine);
    write_tensor(dir / ("full_forward_" + tag + ".f32"), forward);
    std::printf("onnx_peer_dump: gpt model.onnx [%s]: max |engine - training forward| = %.3g\n", tag.c_str(),
                test::max_abs_diff(engine, forward));
    runs += std::string(runs.empty() ? "" : ", ") + "{\"batch\": " + std::to_string(batch) +
            ", \"length\": " + std::to_string(length) + ", \"tag\": \"" + tag + "\"}";
  }
  return "[" + runs + "]";
}

// The training forward's logits of each row's real tokens so far, at the positions of the call's
// S new tokens (left padding gets zeros; the peer check compares real positions only).
Tensor forward_at(Model& model, const std::vector<std::vector<int64_t>>& rows, int64_t s) {
  std::vector<float> out;
  for (size_t r = 0; r < rows.size(); ++r) {
    const std::vector<float> z = test::reference_logits(model, test::ids_tensor(rows[r])).to_vector<float>();
    const int64_t real = static_cast<int64_t>(rows[r].size()), first = real - std::min(s, real);
    out.insert(out.end(), static_cast<size_t>(std::max<int64_t>(0, s - real) * 256), 0.0f);
    out.insert(out.end(), z.begin() + first * 256, z.end());
  }
  return Tensor::from_vector(out, Shape{static_cast<int64_t>(rows.size()), s, 256});
}

// model_with_past on two rows (5 and 9 prompt tokens, the first left-padded), then 3 steps of one
// token: each call's inputs, the engine's logits, the training forward's, and the last presents.
std::string dump_gpt_past_runs(Model& model, const OnnxModel& with_past, const fs::path& dir, Generator& g) {
  std::vector<std::vector<int64_t>> rows{test::random_ids(Shape{5}, 256, g).to_vector<int64_t>(),
                                         test::random_ids(Shape{9}, 256, g).to_vector<int64_t>()};
  const std::vector<int64_t> pads{4, 0};
  std::vector<int64_t> ids, positions, mask;
  for (size_t r = 0; r < 2; ++r)
    for (int64_t j = 0; j < 9; ++j) {
      const bool real = j >= pads[r];
      ids.push_back(real ? rows[r][j - pads[r]] : 0);
      positions.push_back(real ? j - pads[r] : 0);
      mask.push_back(real);
    }
  test::CachedRun run{Tensor(), test::empty_cache(with_past, 2)};
  std::string calls;
  for (int call = 0; call < 4; ++call) {
    const Tensor t_ids = test::ids_tensor(ids, 2), t_pos = test::ids_tensor(positions, 2);
    const Tensor t_mask = test::ids_tensor(mask, 2);
    run = test::run_with_past(with_past, t_ids, t_pos, t_mask, run.cache);
    const std::string tag = std::to_string(call);
    write_tensor(dir / ("past_ids_" + tag + ".i64"), t_ids);
    write_tensor(dir / ("past_positions_" + tag + ".i64"), t_pos);
    write_tensor(dir / ("past_mask_" + tag + ".i64"), t_mask);
    write_tensor(dir / ("past_engine_" + tag + ".f32"), run.logits);
    write_tensor(dir / ("past_forward_" + tag + ".f32"), forward_at(model, rows, t_ids.dim(1)));
    calls += std::string(calls.empty() ? "" : ", ") + "{\"tag\": \"" + tag +
             "\", \"new\": " + std::to_string(t_ids.dim(1)) + ", \"total\": " + std::to_string(t_mask.dim(1)) + "}";
    ids.clear();  // the next call: one new token per row
    positions.clear();
    for (size_t r = 0; r < 2; ++r) {
      rows[r].push_back(static_cast<int64_t>(g.below(256)));
      ids.push_back(rows[r].back());
      positions.push_back(static_cast<int64_t>(rows[r].size()) - 1);
    }
    std::vector<int64_t> next_mask;
    for (size_t r = 0; r < 2; ++r) {
      const auto row = mask.begin() + static_cast<std::ptrdiff_t>(r * mask.size() / 2);
      next_mask.insert(next_mask.end(), row, row + static_cast<std::ptrdiff_t>(mask.size() / 2));
      next_mask.push_back(1);
    }
    mask = next_mask;
  }
  for (size_t i = 0; i < run.cache.size(); ++i)
    write_tensor(dir / ("past_present_" + std::to_string(i) + ".f32"), run.cache[i]);
  return "[" + calls + "]";
}

// Writes gpt/ (both graphs, the runs above and a greedy continuation of 64 tokens with and without
// the cache) and gpt_cases.json.
void dump_gpt(const fs::path& out) {
  const int64_t ctx = 80, prompt_length = 16, steps = 64;
  auto model = test::make_test_model(test::gpt_test_config(ctx), 81);
  const fs::path dir = out / "gpt";
  fs::create_directories(dir);
  const std::string full_bytes = export_onnx(*model, ExportOptions{}).bytes();
  const std::string past_bytes = export_onnx_with_past(*model, ExportOptions{}).bytes();
  write_raw(dir / "model.onnx", full_bytes.data(), full_bytes.size());
  write_raw(dir / "model_with_past.onnx", past_bytes.data(), past_bytes.size());
  const OnnxModel full = OnnxModel::from_bytes(full_bytes), with_past = OnnxModel::from_bytes(past_bytes);
  Generator g(RngKey{82, 0, static_cast<uint32_t>(RngPurpose::test)});
  const std::string full_runs = dump_gpt_full_runs(*model, full, dir, g);
  const std::string past_runs = dump_gpt_past_runs(*model, with_past, dir, g);
  const std::vector<int64_t> prompt = test::random_ids(Shape{prompt_length}, 256, g).to_vector<int64_t>();
  const std::vector<int64_t> cached = test::greedy_cached(with_past, prompt, steps);
  const std::vector<int64_t> recomputed = test::greedy_full(full, prompt, steps, ctx);
  std::printf("onnx_peer_dump: gpt greedy continuation of %lld tokens: with and without the cache %s\n",
              static_cast<long long>(steps), cached == recomputed ? "agree" : "DIFFER");
  std::ofstream(out / "gpt_cases.json") << "{\"dir\": \"gpt\", \"vocab\": 256, \"ctx\": " << ctx
                                        << ", \"n_layer\": 2, \"n_head\": 2, \"head_dim\": 16"
                                        << ",\n \"full_runs\": " << full_runs << ",\n \"past_runs\": " << past_runs
                                        << ",\n \"greedy\": {\"prompt\": " << json_ints(prompt)
                                        << ", \"steps\": " << steps
                                        << ",\n  \"engine_with_past\": " << json_ints(cached)
                                        << ",\n  \"engine_without_past\": " << json_ints(recomputed) << "}}\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: onnx_peer_dump OUT_DIR [IDX_IMAGES]\n"
                 "       onnx_peer_dump OUT_DIR --gpt\n"
                 "       onnx_peer_dump OUT_DIR --model MODEL.onnx --data DATASET.h5 [--quantize none|int8]\n");
    return 2;
  }
  try {
    const fs::path out = argv[1];
    fs::create_directories(out);
    if (argc >= 3 && std::string(argv[2]) == "--gpt") {
      dump_gpt(out);
      return 0;
    }
    if (argc >= 6 && std::string(argv[2]) == "--model" && std::string(argv[4]) == "--data")
      return dump_file(out, argv[3], argv[5], argc >= 8 && std::string(argv[6]) == "--quantize" ? argv[7] : "none");
    std::string source;
    const std::vector<uint8_t> images = load_images(argc > 2 ? argv[2] : "", source);
    const int64_t available = static_cast<int64_t>(images.size()) / kPixels;
    Tensor fmnist = Tensor::empty(Shape{available, 1, 28, 28}, DType::u8);
    std::copy_n(images.data(), available * kPixels, fmnist.data<uint8_t>());
    std::vector<std::string> cases;
    for (const char* type : {"mlp", "cnn"})
      for (const char* quantize : {"none", "int8"}) {
        ModelConfig config;
        config.type = type;
        auto model = create_model(config);
        model->build(Device::cpu(), 42);
        ExportOptions options;
        options.quantize = quantize;
        options.input_dtype = "u8";
        options.x_scale = 1.0 / 255.0;
        cases.push_back(dump_case(*model, options, std::string(type) + "_" + quantize, fmnist, out));
      }
    // Every core layer, with random (perturbed) parameters so no LayerNorm is an identity.
    Generator g(RngKey{77, 0, static_cast<uint32_t>(RngPurpose::test)});
    auto image = test::make_test_model(test::image_test_config(), 5);
    ExportOptions f32;
    f32.x_scale = 0.5;
    f32.x_shift = 0.25;
    const Tensor noise = Tensor::randn(test::batch_shape(image->config(), 500), 0.0f, 1.0f, g);
    cases.push_back(dump_case(*image, f32, "every_layer_image_none", noise, out));
    auto tokens = test::make_test_model(test::tokens_test_config(), 6);
    const Tensor ids = test::random_ids(test::batch_shape(tokens->config(), 500), 20, g);
    cases.push_back(dump_case(*tokens, ExportOptions{}, "every_layer_tokens_none", ids, out));
    ExportOptions int8;
    int8.quantize = "int8";
    cases.push_back(dump_case(*tokens, int8, "every_layer_tokens_int8", ids, out));
    write_cases(out, cases);
    std::printf("onnx_peer_dump: mlp/cnn inputs from %s\n", source.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "onnx_peer_dump: %s\n", e.what());
    return 1;
  }
}
