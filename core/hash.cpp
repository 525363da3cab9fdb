#include "core/hash.h"

// The implementation is compiled in here (Debian's libxxhash-dev header): no library to link.
#define XXH_INLINE_ALL
#include <xxhash.h>

namespace dtrain {

uint64_t fnv1a64(const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t xxh3_64(const void* data, size_t bytes) { return XXH3_64bits(data, bytes); }

}  // namespace dtrain
