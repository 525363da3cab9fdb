#pragma once
// Stable, non-cryptographic hashes of bytes (the same value on every machine and run).
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace dtrain {

// FNV-1a, 64 bits: cheap checksums of small and medium buffers (parameter checksums across ranks).
uint64_t fnv1a64(const void* data, size_t bytes);
inline uint64_t fnv1a64(std::string_view text) { return fnv1a64(text.data(), text.size()); }

// XXH3, 64 bits (xxHash 0.8): the checksum of stored bytes (checkpoints); tens of GB/s, so it costs
// little beside the disk.
uint64_t xxh3_64(const void* data, size_t bytes);
inline uint64_t xxh3_64(std::string_view text) { return xxh3_64(text.data(), text.size()); }

}  // namespace dtrain
