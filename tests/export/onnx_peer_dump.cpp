// The dtrain half of the onnxruntime peer check (onnx_peer_check.sh): exports the registry's mlp
// and cnn (f32 and int8, u8 inputs with the dataset's 1/255 scaling folded in) and the two test
// models that hold every core layer (f32 images, int64 ids), runs each file with dtrain's ONNX
// engine at batch 1 and batch 37, and writes the model, the inputs and dtrain's outputs as raw
// little-endian files plus cases.json for onnx_peer_check.js.
// mlp/cnn inputs: the Fashion-MNIST test images (IDX, as Debian's dataset-fashion-mnist ships
// them) when the path given exists, else random u8 images.
// usage: onnx_peer_dump OUT_DIR [IDX_IMAGES]
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: onnx_peer_dump OUT_DIR [IDX_IMAGES]\n"
                 "       onnx_peer_dump OUT_DIR --model MODEL.onnx --data DATASET.h5 [--quantize none|int8]\n");
    return 2;
  }
  try {
    const fs::path out = argv[1];
    fs::create_directories(out);
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
