// UTF-8 for byte tokens: validation of request text, and a byte stream turned into valid text as
// it arrives (split characters wait for their last byte, bytes that are no UTF-8 become U+FFFD).
#include "serve/utf8.h"

#include <gtest/gtest.h>

namespace dtrain::serve {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8, FindsTheFirstInvalidByte) {
  EXPECT_EQ(find_invalid_utf8("plain ascii"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xFF"), 2u);
  EXPECT_EQ(find_invalid_utf8("a\xC3"), 1u) << "truncated character";
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u) << "overlong";
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u) << "surrogate";
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u) << "above U+10FFFF";
  EXPECT_EQ(find_invalid_utf8("x\x80"), 1u) << "continuation without a lead";
}

TEST(Utf8, DecoderHoldsASplitCharacterUntilItsLastByte) {
  Utf8Decoder d;
  EXPECT_EQ(d.push('a'), "a");
  EXPECT_EQ(d.push(0xE2), "");
  EXPECT_EQ(d.push(0x82), "");
  EXPECT_EQ(d.push(0xAC), "\xE2\x82\xAC");
  EXPECT_EQ(d.finish(), "");
}

TEST(Utf8, DecoderReplacesBytesThatAreNoUtf8) {
  Utf8Decoder d;
  EXPECT_EQ(d.push(0xFF), kFffd);
  EXPECT_EQ(d.push(0xC3), "");
  EXPECT_EQ(d.push('x'), kFffd + "x") << "a broken character, then the byte on its own";
  EXPECT_EQ(d.push(0xF0), "");
  EXPECT_EQ(d.finish(), kFffd) << "left incomplete at the end";
  EXPECT_EQ(decode_utf8_bytes("ok\xC3\xA9\x80"), "ok\xC3\xA9" + kFffd);
  EXPECT_EQ(find_invalid_utf8(decode_utf8_bytes("\xE0\x80\xAF\xED\xA0\x80z")), std::string::npos);
}

}  // namespace
}  // namespace dtrain::serve
