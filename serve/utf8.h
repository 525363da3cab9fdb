#pragma once
// UTF-8 for the generate endpoints: a byte-level language model's tokens are bytes, so its output
// may split a character across tokens or hold bytes that are no UTF-8 at all, while JSON text must
// be valid UTF-8.
#include <cstdint>
#include <string>
#include <string_view>

namespace dtrain::serve {

// The offset of the first byte that breaks UTF-8 (RFC 3629: no overlong forms, no surrogates,
// nothing above U+10FFFF), or npos when `text` is valid.
size_t find_invalid_utf8(std::string_view text);

// Turns a byte stream into valid UTF-8 text as the bytes arrive: push() returns the characters
// the byte completes (empty while a character is incomplete); a byte that cannot continue or start
// a character becomes U+FFFD. finish() returns U+FFFD for a character left incomplete.
class Utf8Decoder {
 public:
  std::string push(uint8_t byte);
  std::string finish();

 private:
  std::string pending_;               // the lead byte and continuation bytes of an incomplete character
  int needed_ = 0;                    // continuation bytes still expected
  uint8_t low_ = 0x80, high_ = 0xBF;  // the range the next continuation byte must fall in
};

// All bytes through a Utf8Decoder: what the concatenated stream events hold.
std::string decode_utf8_bytes(std::string_view bytes);

}  // namespace dtrain::serve
