#include "serve/utf8.h"

namespace dtrain::serve {
namespace {

constexpr const char* kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// For a lead byte: how many continuation bytes follow and the range of the first one (which rules
// out overlong forms, surrogates and code points above U+10FFFF). -1: not a lead byte.
int continuation_bytes(uint8_t lead, uint8_t& low, uint8_t& high) {
  low = 0x80;
  high = 0xBF;
  if (lead < 0x80) return 0;
  if (lead >= 0xC2 && lead <= 0xDF) return 1;
  if (lead >= 0xE0 && lead <= 0xEF) {
    if (lead == 0xE0) low = 0xA0;
    if (lead == 0xED) high = 0x9F;
    return 2;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    if (lead == 0xF0) low = 0x90;
    if (lead == 0xF4) high = 0x8F;
    return 3;
  }
  return -1;
}

}  // namespace

size_t find_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    uint8_t low = 0, high = 0;
    const int n = continuation_bytes(static_cast<uint8_t>(text[i]), low, high);
    if (n < 0) return i;
    for (int k = 1; k <= n; ++k) {
      if (i + k >= text.size()) return i;
      const auto c = static_cast<uint8_t>(text[i + k]);
      if (c < (k == 1 ? low : 0x80) || c > (k == 1 ? high : 0xBF)) return i;
    }
    i += static_cast<size_t>(n) + 1;
  }
  return std::string_view::npos;
}

std::string Utf8Decoder::push(uint8_t byte) {
  std::string out;
  if (needed_ > 0) {
    if (byte >= low_ && byte <= high_) {
      pending_ += static_cast<char>(byte);
      low_ = 0x80;
      high_ = 0xBF;
      if (--needed_ == 0) out.swap(pending_);
      return out;
    }
    // The character broke off: it becomes U+FFFD and this byte starts afresh.
    out = kReplacement;
    pending_.clear();
    needed_ = 0;
  }
  const int n = continuation_bytes(byte, low_, high_);
  if (n < 0) return out + kReplacement;
  if (n == 0) return out + static_cast<char>(byte);
  pending_ = static_cast<char>(byte);
  needed_ = n;
  return out;
}

std::string Utf8Decoder::finish() {
  if (needed_ == 0) return {};
  pending_.clear();
  needed_ = 0;
  low_ = 0x80;
  high_ = 0xBF;
  return kReplacement;
}

std::string decode_utf8_bytes(std::string_view bytes) {
  Utf8Decoder decoder;
  std::string out;
  for (char c : bytes) out += decoder.push(static_cast<uint8_t>(c));
  return out + decoder.finish();
}

}  // namespace dtrain::serve
