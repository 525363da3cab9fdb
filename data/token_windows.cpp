#include "data/token_windows.h"

#include <algorithm>
#include <span>

#include "core/clock.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/h5.h"

namespace dtrain::data {

namespace {

// Tokens read at a time when inspect_tokens checks a whole file.
constexpr int64_t kCheckBlockTokens = int64_t{1} << 22;

// Throws naming `file` and the first of `tokens` (the file's tokens from offset `first`) outside
// [0, vocab_size).
void check_tokens(std::span<const int32_t> tokens, int64_t first, int64_t vocab_size, const std::string& file) {
  for (size_t i = 0; i < tokens.size(); ++i)
    DTRAIN_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, file, ": token /tokens[", first + static_cast<int64_t>(i),
                 "] = ", tokens[i], " is outside [0, vocab_size=", vocab_size, ")");
}

void check_all_tokens(const h5::Dataset& t, const DatasetInfo& info) {
  std::vector<int32_t> block(static_cast<size_t>(std::min(info.tokens, kCheckBlockTokens)));
  for (int64_t first = 0; first < info.tokens; first += kCheckBlockTokens) {
    const int64_t count = std::min(kCheckBlockTokens, info.tokens - first);
    const std::span<int32_t> part(block.data(), static_cast<size_t>(count));
    t.read_rows<int32_t>(first, count, part);
    check_tokens(part, first, info.num_classes, info.path);
  }
}

}  // namespace

bool is_token_dataset(const std::string& path) {
  auto lock = h5::lock();
  return h5::File::open(path).has("/tokens");
}

DatasetInfo inspect_tokens(const std::string& path, bool check) {
  auto lock = h5::lock();
  h5::File f = h5::File::open(path);
  DTRAIN_CHECK(f.has("/tokens"), path, ": missing dataset /tokens (expected a token corpus: 1-D u16 or i32)");
  const h5::Dataset t = f.dataset("/tokens");
  const Shape shape = t.shape();
  DTRAIN_CHECK(shape.size() == 1, path, ": /tokens has shape ", shape.str(), ", expected [N] tokens");
  const std::string type = t.type_name();
  DTRAIN_CHECK(type == "u16" || type == "i32", path, ": /tokens has element type ", type, ", expected u16 or i32");
  DTRAIN_CHECK(f.has_attr("vocab_size"), path, ": missing attribute vocab_size");
  DatasetInfo info;
  info.path = path;
  info.tokens = shape[0];
  info.num_classes = f.attr_int("vocab_size");
  DTRAIN_CHECK(info.num_classes > 0, path, ": attribute vocab_size = ", info.num_classes, ", expected > 0");
  DTRAIN_CHECK(info.tokens >= 2, path, ": /tokens holds ", info.tokens,
               " token(s), expected at least 2 (a window is ctx + 1 tokens)");
  info.x_dtype = DType::i64;
  info.chunk_rows = t.chunk_rows();
  info.x_filter = t.filter_name();
  if (f.has_attr("source")) info.source = f.attr_text("source");
  if (f.has_attr("created_by")) info.created_by = f.attr_text("created_by");
  if (check) check_all_tokens(t, info);
  return info;
}

TokenWindows::TokenWindows(const std::string& path, int rank, int world, TokenWindowOptions options)
    : info_(inspect_tokens(path, false)), options_(options), rank_(rank) {
  DTRAIN_CHECK(world >= 1 && rank >= 0 && rank < world, path, ": rank ", rank, " outside a world of ", world);
  DTRAIN_CHECK(options_.ctx > 0, path, ": context length ", options_.ctx, " must be positive");
  DTRAIN_CHECK(options_.batch_size > 0, path, ": batch size ", options_.batch_size, " must be positive");
  DTRAIN_CHECK(options_.max_windows >= 0, path, ": max_windows ", options_.max_windows, " is negative");
  info_.sample_shape = Shape{options_.ctx};
  if (options_.random)
    open_random(rank, world);
  else
    open_fixed(rank, world);
}

void TokenWindows::open_random(int rank, int world) {
  const int64_t n = info_.tokens, window = options_.ctx + 1;
  const auto shard_begin = [&](int64_t r) { return r * n / world; };
  int64_t smallest = n;
  for (int r = 0; r < world; ++r) smallest = std::min(smallest, shard_begin(r + 1) - shard_begin(r));
  if (smallest < window) {
    std::string fits = std::to_string(n / window) + " rank(s) fit ctx " + std::to_string(options_.ctx);
    if (smallest >= 2) fits += ", or ctx " + std::to_string(smallest - 1) + " at most with " + std::to_string(world);
    fail(info_.path, ": ", n, " tokens over ", world, " rank(s) give shards of ", smallest,
         " tokens, fewer than a window of ctx + 1 = ", window, " (", fits, ")");
  }
  windows_per_epoch_ = std::max<int64_t>(1, (smallest - 1) / options_.ctx);
  info_.size = windows_per_epoch_ * world;
  read_tokens(shard_begin(rank), shard_begin(rank + 1));
}

void TokenWindows::open_fixed(int rank, int world) {
  const int64_t ctx = options_.ctx, all = (info_.tokens - 1) / ctx;
  DTRAIN_CHECK(all >= 1, info_.path, ": ", info_.tokens, " tokens hold no window of ctx + 1 = ", ctx + 1, " tokens");
  const int64_t used = options_.max_windows > 0 ? std::min(all, options_.max_windows) : all;
  for (int64_t i = rank; i < used; i += world) fixed_starts_.push_back(i * all / used * ctx);
  windows_per_epoch_ = static_cast<int64_t>(fixed_starts_.size());
  info_.size = used;
  if (!fixed_starts_.empty()) read_tokens(fixed_starts_.front(), fixed_starts_.back() + ctx + 1);
}

void TokenWindows::read_tokens(int64_t begin, int64_t end) {
  tokens_.resize(static_cast<size_t>(end - begin));
  {
    auto lock = h5::lock();
    const h5::File f = h5::File::open(info_.path);
    f.dataset("/tokens").read_rows<int32_t>(begin, end - begin, std::span<int32_t>(tokens_));
  }
  check_tokens(tokens_, begin, info_.num_classes, info_.path);
  begin_ = begin;
  end_ = end;
}

int64_t TokenWindows::window_start(int64_t position) const {
  if (!options_.random) return fixed_starts_[static_cast<size_t>(position)];
  Generator gen(RngKey{epoch_seed(options_.seed, state_.epoch), static_cast<uint32_t>(rank_),
                       static_cast<uint32_t>(RngPurpose::sampler)},
                static_cast<uint64_t>(position));
  const auto starts = static_cast<uint64_t>(end_ - begin_ - options_.ctx);  // [begin_, end_ - ctx - 1]
  return begin_ + static_cast<int64_t>(gen.next_u64() % starts);
}

std::optional<Batch> TokenWindows::next() {
  const auto t0 = Clock::now();
  const int64_t count = std::min(options_.batch_size, windows_per_epoch_ - state_.position);
  if (count <= 0) return std::nullopt;
  const int64_t ctx = options_.ctx;
  Batch b;
  b.x = Tensor::empty(Shape{count, ctx}, DType::i64);
  b.y = Tensor::empty(Shape{count, ctx}, DType::i64);
  int64_t* x = b.x.data<int64_t>();
  int64_t* y = b.y.data<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t start = window_start(state_.position + i);
    const int32_t* window = tokens_.data() + (start - begin_);
    std::copy(window, window + ctx, x + i * ctx);
    std::copy(window + 1, window + ctx + 1, y + i * ctx);
    b.indices.push_back(start);
  }
  state_.position += count;
  wait_s_ += seconds_since(t0);
  return b;
}

void TokenWindows::set_epoch(int64_t epoch) {
  DTRAIN_CHECK(epoch >= 0, info_.path, ": epoch ", epoch, " is negative");
  state_ = {epoch, 0};
}

void TokenWindows::restore(const SamplerState& state) {
  DTRAIN_CHECK(state.epoch >= 0, info_.path, ": saved epoch ", state.epoch, " is negative");
  DTRAIN_CHECK(state.position >= 0 && state.position <= windows_per_epoch_, info_.path, ": saved position ",
               state.position, " is outside [0, ", windows_per_epoch_, "] (windows of this rank per epoch)");
  state_ = state;
}

}  // namespace dtrain::data
